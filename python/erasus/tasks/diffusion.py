"""Diffusion adapter: the denoising (noise-prediction) loss of a text-to-image model, per sample.

``loss_i = || f_theta(x_t, t_i, c_i) - target_i ||^2`` (mean over latent entries), with ``x_t = sqrt(abar_t) x_0 +
sqrt(1 - abar_t) eps``, ``t_i`` uniform over the training timesteps and ``target = eps`` (``epsilon``) or the
velocity (``v_prediction``): the DDPM objective (Ho et al., NeurIPS 2020) as diffusers' ``train_text_to_image.py``
computes it, one value per sample so gradient strategies (GA, GradDiff) and per-sample-gradient selectors work.

Batches: ``(images, prompts)`` with images in [0, 1] ``(B, C, H, W)`` (encoded by the VAE, or mapped to [-1, 1] in
pixel space), ``{"latents": z, "prompts": [...]}`` for precomputed latents (``"images"`` / ``"image"`` /
``"pixel_values"`` and ``"prompt"`` / ``"text"`` also read), or a list of prompts alone: enough for
:meth:`DiffusionTask.embeddings` (selection on prompt embeddings) but not for a loss, which needs images.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from ..errors import ErasusTypeError, InvalidInputError
from .base import Batch, Task, register_task

__all__ = ["PROMPT_KEYS", "DiffusionTask", "denoising_loss", "is_diffusion_model", "split_batch"]

_X_KEYS = ("latents", "images", "image", "pixel_values")
PROMPT_KEYS = ("prompts", "prompt", "text", "caption")


def is_diffusion_model(model: Any) -> bool:
    """A text-to-image diffusion wrapper (:class:`erasus.models.StableDiffusionWrapper` or a look-alike)."""
    return all(hasattr(model, a) for a in ("unet", "scheduler", "encode_prompt", "latents_of"))


def _prompts(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, Sequence) and value and all(isinstance(p, str) for p in value):
        return list(value)
    raise InvalidInputError(f"prompts must be a non-empty list of strings, got {type(value).__name__}")


def split_batch(batch: Batch) -> tuple[torch.Tensor | None, bool, list[str]]:
    """``(images or latents or None, is_latents, prompts)`` of a diffusion batch."""
    if isinstance(batch, Mapping):
        prompts = next((batch[k] for k in PROMPT_KEYS if k in batch), None)
        if prompts is None:
            raise InvalidInputError(f"a diffusion batch dict needs prompts under one of {list(PROMPT_KEYS)}")
        key = next((k for k in _X_KEYS if k in batch), None)
        return (None if key is None else batch[key]), key == "latents", _prompts(prompts)
    if isinstance(batch, (tuple, list)) and batch and all(isinstance(p, str) for p in batch):
        return None, False, list(batch)
    if isinstance(batch, (tuple, list)) and len(batch) == 2 and isinstance(batch[0], torch.Tensor):
        return batch[0], False, _prompts(batch[1])
    raise ErasusTypeError(
        "a diffusion batch is (images, prompts), {'latents'|'images': ..., 'prompts': [...]} or a list of prompts; "
        f"got {type(batch).__name__}")


def denoising_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample mean squared error ``(B,)`` between the UNet's prediction and its target."""
    return (prediction.float() - target.float()).pow(2).reshape(prediction.shape[0], -1).mean(1)


@register_task("diffusion")
class DiffusionTask(Task):
    """Noise-prediction loss of a text-to-image diffusion model (see the module docstring).

    Args:
        seed: seeds the timesteps and noise (a CPU generator owned by the task, advanced by every call, so a run
            is reproducible and every call draws fresh ``(t, eps)`` as training does).
        timestep_range: ``(low, high)``: ``t`` is drawn uniformly from ``[low, high)`` (default all training steps).
        train_text_encoder: let gradients reach the text encoder (default False: the official ESD / SalUn / CA code
            trains the UNet only, so the prompt context is computed without a graph).
    """

    name = "diffusion"

    def __init__(self, *, seed: int = 0, timestep_range: tuple[int, int] | None = None,
                 train_text_encoder: bool = False) -> None:
        if timestep_range is not None:
            lo, hi = timestep_range
            if not (isinstance(lo, int) and isinstance(hi, int) and 0 <= lo < hi):
                raise InvalidInputError(f"timestep_range must be integers 0 <= low < high, got {timestep_range!r}")
        self.seed = int(seed)
        self.timestep_range = timestep_range
        self.train_text_encoder = bool(train_text_encoder)
        self.generator = torch.Generator().manual_seed(self.seed)

    def batch_size(self, batch: Batch) -> int:
        return len(split_batch(batch)[2])

    def _check_model(self, model: Any) -> None:
        if not is_diffusion_model(model):
            raise ErasusTypeError(f"the diffusion task needs a StableDiffusionWrapper, got {type(model).__name__}")

    def context(self, model: Any, prompts: Sequence[str]) -> torch.Tensor:
        """The cross-attention context of ``prompts`` (with a graph only when the text encoder is trained)."""
        if self.train_text_encoder:
            return model.encode_prompt(list(prompts))
        with torch.no_grad():
            return model.encode_prompt(list(prompts))

    def clean_latents(self, model: Any, batch: Batch) -> tuple[torch.Tensor, list[str]]:
        """``(x_0, prompts)``: latents of the batch's images (or its latents as given)."""
        x, is_latents, prompts = split_batch(batch)
        if x is None:
            raise InvalidInputError(
                "the denoising loss needs images (or latents) with the prompts: pass (image, prompt) pairs, or use a "
                "strategy that works from prompts alone (esd, uce, concept_ablation, salun generate their own)")
        if x.shape[0] != len(prompts):
            raise InvalidInputError(f"the batch has {x.shape[0]} images but {len(prompts)} prompts")
        if is_latents:
            expected = tuple(model.latent_shape[:1])
            if x.ndim != 4 or tuple(x.shape[1:2]) != expected:
                raise InvalidInputError(f"latents must be (B, {expected[0]}, h, w), got {tuple(x.shape)}")
            return x.to(model.device, model.dtype), prompts
        with torch.no_grad():
            return model.latents_of(x), prompts

    def noised(self, model: Any, x0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(x_t, t, target)`` at timesteps and noise drawn from the task's generator."""
        lo, hi = self.timestep_range or (0, model.num_train_timesteps)
        if hi > model.num_train_timesteps:
            raise InvalidInputError(f"timestep_range ends at {hi}, past the model's {model.num_train_timesteps} steps")
        b = x0.shape[0]
        t = torch.randint(lo, hi, (b,), generator=self.generator).to(x0.device)
        noise = torch.randn(x0.shape, generator=self.generator).to(x0)
        x_t = model.scheduler.add_noise(x0, noise, t)
        if model.prediction_type == "v_prediction":
            target = model.scheduler.get_velocity(x0, noise, t)
        elif model.prediction_type == "epsilon":
            target = noise
        else:
            raise InvalidInputError(f"unsupported prediction_type {model.prediction_type!r} (epsilon or v_prediction)")
        return x_t, t, target

    def outputs(self, model: torch.nn.Module, batch: Batch) -> torch.Tensor:
        """The UNet's prediction ``(B, C, h, w)`` at freshly drawn ``(t, eps)``."""
        self._check_model(model)
        x0, prompts = self.clean_latents(model, batch)
        x_t, t, _ = self.noised(model, x0)
        return model.noise_prediction(x_t, t, self.context(model, prompts))

    def per_sample_loss(self, model: torch.nn.Module, batch: Batch) -> torch.Tensor:
        self._check_model(model)
        x0, prompts = self.clean_latents(model, batch)
        x_t, t, target = self.noised(model, x0)
        return denoising_loss(model.noise_prediction(x_t, t, self.context(model, prompts)), target)

    def embeddings(self, model: torch.nn.Module, batch: Batch) -> torch.Tensor | None:
        """The text encoder's pooled embedding of each prompt ``(B, D)``: selection on prompts (k-center, herding)."""
        self._check_model(model)
        _, _, prompts = split_batch(batch)
        with torch.no_grad():
            return model.pooled_prompt_embeddings(prompts)
