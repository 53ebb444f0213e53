"""Concept Ablation and SalUn-for-diffusion on the tiny pipeline: their parameter sets, their objectives moving the
target concept's prediction onto the anchor's / remapped prompt's, SalUn's mask against a hand computation of the
official generate_mask.py gradient."""

import pytest
import torch
import torch.nn.functional as F
from diffusion_helpers import FORGET, RETAIN, assert_same_state, state_of

import erasus
from erasus.errors import InvalidInputError
from erasus.strategies.diffusion.salun import diffusion_saliency_mask

GEN = {"anchor_images": 2, "anchor_steps": 3, "progress": False}
SGEN = {"images_per_prompt": 2, "generation_steps": 3, "progress": False}


@torch.no_grad()
def _gap(model, prompt_a, prompt_b, seed=0):
    """Mean squared distance between the model's predictions for two prompts on the same seeded noisy latents."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((8, *model.latent_shape), generator=g)
    t = torch.randint(0, 1000, (8,), generator=g)
    a = model.noise_prediction(x, t, model.encode_prompt([prompt_a] * 8))
    b = model.noise_prediction(x, t, model.encode_prompt([prompt_b] * 8))
    return float(F.mse_loss(a, b))


def test_concept_ablation_maps_the_target_onto_the_anchor(tiny_pipe, wrapper):
    caller = state_of(tiny_pipe.unet)
    out = erasus.get_strategy("concept_ablation", anchor="a photo of a shirt", lr=3e-3).unlearn(
        model=wrapper, forget_data=FORGET, steps=25, **GEN)
    assert _gap(out, FORGET[0], "a photo of a shirt") < 0.5 * _gap(wrapper, FORGET[0], "a photo of a shirt")
    kv = set(wrapper.named_parameter_groups()["cross_attn_kv"])
    for (n, p), (_, q) in zip(wrapper.named_parameters(), out.named_parameters()):
        assert torch.equal(p, q) == (n not in kv), n
    assert_same_state(state_of(tiny_pipe.unet), caller)


def test_concept_ablation_full_trains_the_whole_unet(wrapper):
    out = erasus.get_strategy("concept_ablation", anchor="a shirt", parameter_group="full").unlearn(
        model=wrapper, forget_data=FORGET, retain_data=RETAIN[:1], steps=1, **GEN)
    groups = wrapper.named_parameter_groups()
    changed = {n for (n, p), (_, q) in zip(wrapper.named_parameters(), out.named_parameters()) if not torch.equal(p, q)}
    assert changed & set(groups["non_cross_attn"]) and changed <= set(groups["unet"])


@pytest.mark.parametrize("options, match", [({}, "anchor"), ({"anchor": "x", "parameter_group": "vae"}, "parameter_group"),
                                            ({"anchor": ["a", "b"]}, "anchor")])
def test_concept_ablation_refuses_bad_options(wrapper, options, match):
    before = state_of(wrapper)
    with pytest.raises(InvalidInputError, match=match):
        erasus.get_strategy("concept_ablation", **options).unlearn(model=wrapper, forget_data=FORGET, steps=1, **GEN)
    assert_same_state(state_of(wrapper), before)


def _official_mask(model, latents, prompts, params, *, ratio, guidance, seed):
    """generate_mask.py written out: one batch, x_t = sqrt(abar) z + sqrt(1 - abar) eps with the same draws."""
    g = torch.Generator().manual_seed(seed)
    t = torch.randint(0, 1000, (latents.shape[0],), generator=g)
    eps = torch.randn(latents.shape, generator=g)
    abar = model.scheduler.alphas_cumprod.double()[t].reshape(-1, 1, 1, 1)
    x_t = (abar.sqrt() * latents.double() + (1 - abar).sqrt() * eps.double()).float()
    with torch.no_grad():
        cond, null = model.encode_prompt(prompts), model.encode_prompt([""] * len(prompts))
    out_c = model.unet(x_t, t, encoder_hidden_states=cond).sample
    out_0 = model.unet(x_t, t, encoder_hidden_states=null).sample
    loss = -((eps - ((1 + guidance) * out_c - guidance * out_0)) ** 2).mean()
    grads = torch.autograd.grad(loss, params)
    flat = torch.cat([gr.abs().flatten() for gr in grads])
    kth = flat.sort(descending=True).values[int(round(ratio * flat.numel())) - 1]
    return [(gr.abs() >= kth).float() for gr in grads]


def test_saliency_mask_matches_the_official_recipe(wrapper):
    latents = torch.randn((3, *wrapper.latent_shape), generator=torch.Generator().manual_seed(2))
    prompts = ["a dress", "a red dress", "a dress"]
    params = [p for n, p in wrapper.named_parameters() if n in set(wrapper.named_parameter_groups()["cross_attn"])]
    ours = diffusion_saliency_mask(wrapper, latents, prompts, params, ratio=0.3, guidance=7.5, batch_size=8, seed=4)
    ref = _official_mask(wrapper, latents, prompts, params, ratio=0.3, guidance=7.5, seed=4)
    agree = sum(int((a == b).sum()) for a, b in zip(ours, ref)) / sum(a.numel() for a in ref)
    assert agree > 0.999
    fraction = sum(float(m.sum()) for m in ours) / sum(m.numel() for m in ours)
    assert abs(fraction - 0.3) < 0.01


def test_salun_moves_forget_to_the_remap_and_keeps_non_salient_weights(tiny_pipe, wrapper):
    caller = state_of(tiny_pipe.unet)
    strategy = erasus.get_strategy("salun_diffusion", remap="a photo of a shirt", ratio=0.5, lr=3e-3,
                                   train_method="cross_attn", batch_size=4)
    out = strategy.unlearn(model=wrapper, forget_data=FORGET, retain_data=RETAIN, steps=25, **SGEN)
    assert _gap(out, FORGET[0], "a photo of a shirt") < 0.7 * _gap(wrapper, FORGET[0], "a photo of a shirt")
    xattn = set(wrapper.named_parameter_groups()["cross_attn"])
    moved, total = 0, 0
    for (n, p), (_, q) in zip(wrapper.named_parameters(), out.named_parameters()):
        if n not in xattn:
            assert torch.equal(p, q), n
        else:
            moved += int((p != q).sum())
            total += p.numel()
    # only salient entries (half of the trained ones) may move
    assert 0 < moved <= 0.5 * total + 1
    assert abs(strategy.info_["salient_fraction"] - 0.5) < 0.01
    assert_same_state(state_of(tiny_pipe.unet), caller)


def test_salun_takes_image_prompt_pairs(wrapper):
    g = torch.Generator().manual_seed(0)
    forget = [(torch.rand((3, 16, 16), generator=g), FORGET[0]) for _ in range(2)]
    retain = [(torch.rand((3, 16, 16), generator=g), p) for p in RETAIN]
    strategy = erasus.get_strategy("salun_diffusion", remap="a photo of a shirt")
    strategy.unlearn(model=wrapper, forget_data=forget, retain_data=retain, steps=1, progress=False)
    assert strategy.info_["forget_latents"] == 2 and strategy.info_["retain_latents"] == 3


@pytest.mark.parametrize("options, kwargs, match", [
    ({}, {"retain_data": RETAIN}, "remap"),
    ({"remap": "a shirt"}, {}, "retain"),
    ({"remap": "a shirt", "weight_decay": 0.1}, {"retain_data": RETAIN}, "weight_decay"),
    ({"remap": "a shirt", "ratio": 0.0}, {"retain_data": RETAIN}, "ratio"),
])
def test_salun_refuses_bad_input(wrapper, options, kwargs, match):
    before = state_of(wrapper)
    with pytest.raises(InvalidInputError, match=match):
        erasus.get_strategy("salun_diffusion", **options).unlearn(model=wrapper, forget_data=FORGET, steps=1, **kwargs,
                                                                  **SGEN)
    assert_same_state(state_of(wrapper), before)


def test_general_salun_points_to_the_diffusion_recipe(wrapper):
    pairs = [(torch.rand(3, 16, 16), FORGET[0])]
    with pytest.raises(InvalidInputError, match="salun_diffusion"):
        erasus.get_strategy("salun").unlearn(model=wrapper, forget_data=pairs, steps=1, progress=False)
