"""DiffusionTask: the per-sample denoising loss against a float64 hand computation of the DDPM objective, and
gradient ascent / GradDiff / selection through it on the tiny pipeline."""

import numpy as np
import pytest
import torch
from diffusion_helpers import assert_same_state, state_of

import erasus
from erasus.errors import InvalidInputError
from erasus.tasks import infer_task
from erasus.tasks.diffusion import DiffusionTask


def _pairs(wrapper, n, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.rand((n, wrapper.image_channels, 16, 16), generator=g)
    prompts = [f"a photo of a {w}" for w in ("dress", "shirt", "bag", "coat", "boot", "shoe")[:n]]
    return [(images[i], prompts[i]) for i in range(n)]


def test_infer_task_picks_the_diffusion_adapter(wrapper):
    assert isinstance(infer_task(wrapper, ["a dress"]), DiffusionTask)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_per_sample_loss_is_the_ddpm_objective(tiny_pipe, prediction_type):
    """SD 1.x predicts the noise, SD 2.x-v the velocity v = sqrt(abar) eps - sqrt(1 - abar) x0."""
    parts = dict(tiny_pipe.components)
    parts["scheduler"] = tiny_pipe.scheduler.__class__.from_config(tiny_pipe.scheduler.config,
                                                                   prediction_type=prediction_type)
    wrapper = erasus.models.StableDiffusionWrapper({k: parts[k] for k in ("unet", "vae", "text_encoder", "tokenizer",
                                                                           "scheduler")})
    images = torch.rand((3, 3, 16, 16), generator=torch.Generator().manual_seed(1))
    prompts = ["a dress", "a shirt", "a bag"]
    task = DiffusionTask(seed=5)
    with torch.no_grad():
        got = task.per_sample_loss(wrapper, (images, prompts))
        # the same draws from an identically seeded generator, the forward process written out in float64
        g = torch.Generator().manual_seed(5)
        t = torch.randint(0, 1000, (3,), generator=g)
        x0 = wrapper.vae.encode(images * 2 - 1).latent_dist.mean * wrapper.vae.config.scaling_factor
        noise = torch.randn(x0.shape, generator=g)
        betas = np.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=np.float64) ** 2  # SD's scaled-linear
        abar = torch.from_numpy(np.cumprod(1 - betas))[t].reshape(-1, 1, 1, 1)
        x_t = (abar.sqrt() * x0.double() + (1 - abar).sqrt() * noise.double()).float()
        context = wrapper.text_encoder(wrapper.tokenizer(prompts, padding="max_length", max_length=32,
                                                         return_tensors="pt")["input_ids"])[0]
        pred = wrapper.unet(x_t, t, encoder_hidden_states=context).sample
        target = noise.double() if prediction_type == "epsilon" else \
            abar.sqrt() * noise.double() - (1 - abar).sqrt() * x0.double()
        ref = ((pred.double() - target) ** 2).mean((1, 2, 3))
    assert got.shape == (3,)
    torch.testing.assert_close(got.double(), ref, atol=1e-4, rtol=1e-4)


def test_prompt_only_batches_have_embeddings_but_no_loss(wrapper):
    task = DiffusionTask()
    emb = task.embeddings(wrapper, ["a dress", "a shirt"])
    assert emb.shape == (2, wrapper.text_encoder.config.hidden_size)
    with pytest.raises(InvalidInputError, match="needs images"):
        task.per_sample_loss(wrapper, ["a dress"])


@torch.no_grad()
def _mean_loss(model, pairs):
    batch = (torch.stack([x for x, _ in pairs]), [p for _, p in pairs])
    return float(torch.stack([DiffusionTask(seed=s).loss(model, batch) for s in range(8)]).mean())


@pytest.mark.parametrize("name", ["gradient_ascent", "grad_diff"])
def test_gradient_baselines_train_the_unet_through_the_task(tiny_pipe, wrapper, name):
    caller = state_of(tiny_pipe.unet)
    forget, retain = _pairs(wrapper, 2), _pairs(wrapper, 4, seed=1)
    task = DiffusionTask(seed=0)
    before = _mean_loss(wrapper, forget)
    out = erasus.get_strategy(name, lr=1e-2, task=task).unlearn(model=wrapper, forget_data=forget, retain_data=retain,
                                                                 steps=3, progress=False)
    after = _mean_loss(out, forget)
    assert after > before  # the denoising loss on the forget pairs went up
    for group in ("text_encoder", "vae"):
        names = set(wrapper.named_parameter_groups()[group])
        for (n, p), (_, q) in zip(wrapper.named_parameters(), out.named_parameters()):
            if n in names:
                assert torch.equal(p, q), n
    assert_same_state(state_of(tiny_pipe.unet), caller)


def test_kcenter_on_prompt_embeddings_through_the_unlearner(wrapper):
    prompts = [f"a photo of a {w}" for w in ("dress", "red dress", "long dress", "shirt", "bag", "coat")]
    unlearner = erasus.ErasusUnlearner(wrapper, strategy="uce", selector="kcenter", prune_ratio=0.5,
                                       features="embeddings")
    sel, _ = unlearner.select(prompts)
    with torch.no_grad():
        emb = wrapper.text_encoder(wrapper.tokenizer(prompts, padding="max_length", max_length=32,
                                                     return_tensors="pt")["input_ids"]).pooler_output
    ref = erasus.select(emb.numpy().astype(np.float32), 3, method="kcenter", seed=0)
    assert sorted(sel.indices.tolist()) == sorted(ref.indices.tolist())


def test_craig_on_denoising_gradients_through_the_unlearner(wrapper):
    """Per-sample gradients of (image, prompt) batches: the prompts are sliced per sample with the images."""
    pairs = _pairs(wrapper, 6)
    unlearner = erasus.ErasusUnlearner(wrapper, strategy="gradient_ascent", selector="craig", prune_ratio=0.5,
                                       feature_options={"proj_dim": 16, "progress": False})
    sel, _ = unlearner.select(pairs)
    assert len(sel.indices) == 3 and len(set(sel.indices.tolist())) == 3
    assert float(sel.weights.sum()) == pytest.approx(6.0)
    features = erasus.features.per_sample_gradients(wrapper, pairs, proj_dim=16, progress=False, task=DiffusionTask())
    assert features.shape == (6, 16) and bool(torch.isfinite(features).all()) and float(features.norm()) > 0


def test_a_pixel_space_model_trains_on_image_prompt_pairs():
    """Training from scratch (what the measured run does): fine-tuning on pairs lowers the denoising loss."""
    model = erasus.models.StableDiffusionWrapper(
        erasus.models.tiny_components(pixel_space=True, image_channels=1, sample_size=8, seed=1))
    g = torch.Generator().manual_seed(0)
    square = torch.zeros(1, 8, 8)
    square[:, 2:6, 2:6] = 1.0
    pairs = [(square + 0.05 * torch.rand((1, 8, 8), generator=g), "a square") for _ in range(16)]
    before = _mean_loss(model, pairs)
    out = erasus.get_strategy("finetune", lr=3e-3, optimizer="adam", batch_size=16).unlearn(
        model=model, retain_data=pairs, steps=40, progress=False, task=DiffusionTask(seed=0))
    assert _mean_loss(out, pairs) < 0.7 * before
