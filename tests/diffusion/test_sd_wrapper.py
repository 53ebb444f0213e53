"""StableDiffusionWrapper on the tiny pipeline: loading, seeded generation against diffusers' own pipeline,
cross-attention maps against a hand computation, parameter groups against the module names."""

import re

import pytest
import torch
from diffusion_helpers import assert_same_state, state_of

from erasus.errors import ErasusTypeError, InvalidInputError
from erasus.models import StableDiffusionWrapper, tiny_components


def test_folder_loads_the_saved_weights(tiny_pipe, tiny_path):
    w = StableDiffusionWrapper(tiny_path)
    for name in ("unet", "text_encoder", "vae"):
        assert_same_state(state_of(getattr(w, name)), state_of(getattr(tiny_pipe, name)))
    assert type(w.scheduler) is type(tiny_pipe.scheduler)
    assert w.tokenizer("a dress")["input_ids"] == tiny_pipe.tokenizer("a dress")["input_ids"]


def test_generate_matches_the_diffusers_pipeline(tiny_pipe, wrapper):
    """Same initial noise, same DDIM schedule and guidance: the wrapper's loop is diffusers' pipeline."""
    ours = wrapper.generate(["a photo of a dress"], num_inference_steps=4, guidance_scale=3.0, seed=7)
    noise = torch.randn((1, *wrapper.latent_shape), generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        ref = tiny_pipe("a photo of a dress", num_inference_steps=4, guidance_scale=3.0, latents=noise,
                        output_type="pt", height=16, width=16).images
    torch.testing.assert_close(ours, ref.float(), atol=1e-4, rtol=1e-4)
    again = wrapper.generate(["a photo of a dress"], num_inference_steps=4, guidance_scale=3.0, seed=7)
    other = wrapper.generate(["a photo of a dress"], num_inference_steps=4, guidance_scale=3.0, seed=8)
    assert torch.equal(ours, again) and not torch.equal(ours, other)


def test_partial_sampling_stops_at_the_requested_step(wrapper):
    full, t0 = wrapper.sample(["a dress"], num_inference_steps=5, seed=1)
    part, t = wrapper.sample(["a dress"], num_inference_steps=5, seed=1, stop_at=2)
    resumed, _ = wrapper.sample(["a dress"], num_inference_steps=5, seed=1, stop_at=None, latents=part)
    assert int(t0) == 0
    scheduler = wrapper.scheduler.__class__.from_config(wrapper.scheduler.config)
    scheduler.set_timesteps(5)
    assert int(t) == int(scheduler.timesteps[2])
    assert not torch.equal(part, full)


def test_cross_attention_maps_match_a_hand_softmax(wrapper):
    captured = {}
    name, module = next(iter(wrapper.cross_attention_modules().items()))

    def grab(mod, args, kwargs):
        captured["h"] = args[0] if args else kwargs["hidden_states"]
        captured["c"] = kwargs["encoder_hidden_states"]

    handle = module.register_forward_pre_hook(grab, with_kwargs=True)
    try:
        maps = wrapper.get_cross_attention_maps("a photo of a dress", seed=3)
    finally:
        handle.remove()
    assert set(maps) == set(wrapper.cross_attention_modules())
    h, c = captured["h"].double(), captured["c"].double()
    q = h @ module.to_q.weight.double().T
    k = c @ module.to_k.weight.double().T
    heads = module.heads
    b, n, d = q.shape
    q = q.reshape(b, n, heads, d // heads).transpose(1, 2)
    k = k.reshape(b, k.shape[1], heads, d // heads).transpose(1, 2)
    probs = torch.softmax(q @ k.transpose(-1, -2) * (d // heads) ** -0.5, dim=-1).mean(1)
    got = maps[name]
    assert got.shape[-1] == wrapper.tokenizer.model_max_length
    torch.testing.assert_close(got.reshape(b, n, -1).double(), probs, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(got.sum(-1), torch.ones(got.shape[:-1]), atol=1e-5, rtol=0)
    # the processors are put back: the next plain forward does not record
    assert all(type(m.processor).__name__ != "_CrossAttentionStore" for m in wrapper.cross_attention_modules().values())


def test_parameter_groups_follow_the_module_names(wrapper):
    groups = wrapper.named_parameter_groups()
    unet = [n for n, _ in wrapper.named_parameters() if n.startswith("unet.")]
    assert sorted(groups["unet"]) == sorted(unet)
    assert sorted(groups["cross_attn"]) == sorted(n for n in unet if ".attn2." in n)
    assert sorted(groups["non_cross_attn"]) == sorted(n for n in unet if ".attn2." not in n)
    assert sorted(groups["cross_attn_kv"]) == sorted(n for n in unet if re.search(r"\.attn2\.to_[kv]\.", n))
    assert groups["cross_attn_kv"] and groups["text_encoder"] and groups["vae"]
    linear = wrapper.named_parameter_groups(layer_types=(torch.nn.Linear, torch.nn.Conv2d))
    modules = dict(wrapper.named_modules())
    for n in linear["non_cross_attn"]:
        assert isinstance(modules[n.rsplit(".", 1)[0]], (torch.nn.Linear, torch.nn.Conv2d))
    assert set(linear["non_cross_attn"]) < set(groups["non_cross_attn"])  # norms are left out


def test_pixel_space_round_trip(tmp_path):
    w = StableDiffusionWrapper(tiny_components(pixel_space=True, image_channels=1, sample_size=8))
    assert w.pixel_space and w.vae is None and w.named_parameter_groups()["vae"] == []
    images = torch.rand(2, 1, 8, 8)
    torch.testing.assert_close(w.latents_of(images), images * 2 - 1)
    torch.testing.assert_close(w.decode(w.latents_of(images)), images)
    w.save_pretrained(tmp_path)
    back = StableDiffusionWrapper(tmp_path)
    assert back.vae is None
    assert_same_state(state_of(back.unet), state_of(w.unet))
    assert torch.equal(back.generate(["a dress"], num_inference_steps=2), w.generate(["a dress"], num_inference_steps=2))


def test_bad_sources_are_refused(tmp_path):
    with pytest.raises(ErasusTypeError, match="not a diffusion pipeline"):
        StableDiffusionWrapper(torch.nn.Linear(2, 2))
    with pytest.raises(InvalidInputError, match="model_index.json"):
        StableDiffusionWrapper(tmp_path)
    with pytest.raises(InvalidInputError, match="does not exist"):
        StableDiffusionWrapper(tmp_path / "nope")


def test_bad_prompts_are_refused(wrapper):
    with pytest.raises(InvalidInputError, match="empty"):
        wrapper.generate([])
    with pytest.raises(InvalidInputError, match="strings"):
        wrapper.generate([3])
