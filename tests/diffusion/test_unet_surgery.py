"""unet_surgery (Scissorhands): the trimmed weights are exactly the top connection-sensitivity entries of a hand
computation of the official snip(), re-initialised as the official code does; the repair trains its group only."""

import random

import pytest
import torch
from diffusion_helpers import FORGET, RETAIN, assert_same_state, state_of

import erasus
from erasus.errors import InvalidInputError
from erasus.strategies.diffusion.common import latents_and_prompts
from erasus.tasks.diffusion import DiffusionTask

GEN = {"images_per_prompt": 2, "generation_steps": 3, "progress": False}


def _hand_snip(model, latents, prompts, *, batches, batch_size, seed, guidance=7.5):
    """snip() of JingWu321/Scissorhands SD/shs_cls.py with the same random draws, SNIP |theta * sum |g||."""
    task, rng = DiffusionTask(seed=seed), random.Random(seed)
    names = model.named_parameter_groups()["unet"]
    params = dict(model.named_parameters())
    acc = {n: torch.zeros_like(params[n]) for n in names}
    for _ in range(batches):
        idx = [rng.randrange(len(prompts)) for _ in range(min(batch_size, len(prompts)))]
        x_t, t, eps = task.noised(model, latents[idx])
        cond = model.encode_prompt([prompts[i] for i in idx]).detach()
        null = model.encode_prompt([""] * len(idx)).detach()
        out_c = model.unet(x_t, t, encoder_hidden_states=cond).sample
        out_0 = model.unet(x_t, t, encoder_hidden_states=null).sample
        loss = ((eps - (8.5 * out_c - 7.5 * out_0)) ** 2).mean()
        grads = torch.autograd.grad(loss, [params[n] for n in names], allow_unused=True)
        for n, g in zip(names, grads):
            if g is not None:
                acc[n] += g.abs()
    return {n: (acc[n] * params[n].detach()).abs() for n in names}


def test_trimmed_weights_are_the_most_sensitive(wrapper):
    model = erasus.models.StableDiffusionWrapper(wrapper)
    strategy = erasus.get_strategy("unet_surgery", sparsity=0.99, prune_batches=2, batch_size=2)
    out = strategy.unlearn(model=model, forget_data=FORGET, retain_data=RETAIN, steps=1, lr=0.0, **GEN)
    # the forget latents the strategy generated, then the official saliency by hand on the original weights
    frozen = model.unet
    z, p = latents_and_prompts(model, FORGET, per_prompt=2, num_inference_steps=3, guidance_scale=7.5, seed=0,
                               unet=frozen)
    sal = _hand_snip(model, z, p, batches=2, batch_size=2, seed=0)
    flat = torch.cat([s.flatten() for s in sal.values()])
    kth = flat.kthvalue(int(0.99 * flat.numel())).values
    before, after = dict(model.named_parameters()), dict(out.named_parameters())
    expected = sum(int((s > kth).sum()) for s in sal.values())
    assert strategy.info_["trimmed_weights"] == expected
    assert abs(expected - 0.01 * flat.numel()) <= 0.002 * flat.numel()
    agree = 0
    for n, s in sal.items():
        changed = before[n] != after[n]
        agree += int((changed == (s > kth)).sum())
        if n.endswith("bias"):
            assert torch.all(after[n][s > kth] == 0)
        else:
            assert torch.all(after[n][s > kth].abs() <= 0.04)
    assert agree >= flat.numel() - 3  # a re-initialised value can equal the old one only by chance
    for n in set(before) - set(sal):
        assert torch.equal(before[n], after[n]), n


def test_repair_trains_only_its_group(tiny_pipe, wrapper):
    caller = state_of(tiny_pipe.unet)
    out = erasus.get_strategy("unet_surgery", sparsity=0.999, prune_batches=1, train_method="cross_attn",
                              trim_modules=["attn2"]).unlearn(model=wrapper, forget_data=FORGET, retain_data=RETAIN,
                                                              steps=2, **GEN)
    xattn = set(wrapper.named_parameter_groups()["cross_attn"])
    for (n, p), (_, q) in zip(wrapper.named_parameters(), out.named_parameters()):
        if n not in xattn:
            assert torch.equal(p, q), n
    assert_same_state(state_of(tiny_pipe.unet), caller)


@pytest.mark.parametrize("options, kwargs, match", [
    ({"sparsity": 1.0}, {"retain_data": RETAIN}, "sparsity"),
    ({}, {}, "retain"),
    ({"trim_modules": "attn2"}, {"retain_data": RETAIN}, "trim_modules"),
    ({"trim_modules": ["no_such_layer"]}, {"retain_data": RETAIN}, "matched no"),
])
def test_unet_surgery_refuses_bad_input(wrapper, options, kwargs, match):
    before = state_of(wrapper)
    with pytest.raises(InvalidInputError, match=match):
        erasus.get_strategy("unet_surgery", prune_batches=1, **options).unlearn(
            model=wrapper, forget_data=FORGET, steps=1, **kwargs, **GEN)
    assert_same_state(state_of(wrapper), before)
