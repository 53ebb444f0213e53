"""SalUn for text-to-image diffusion (Fan et al., "SalUn: Empowering Machine Unlearning via Gradient-based Weight
Saliency", ICLR 2024, its Stable Diffusion experiments)."""

from __future__ import annotations

import copy
import random
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from ...errors import InvalidInputError
from ...registry import register_strategy
from ...tasks.diffusion import DiffusionTask, denoising_loss
from ..base import Run
from .common import DiffusionStrategy, draw, item_weights, latents_and_prompts, training_only

__all__ = ["SalUnDiffusion", "diffusion_saliency_mask"]

TRAIN_METHODS = {"full": "unet", "cross_attn": "cross_attn"}


def diffusion_saliency_mask(model: Any, latents: torch.Tensor, prompts: Sequence[str], params: Sequence[torch.nn.Parameter],
                            *, ratio: float, guidance: float, batch_size: int, seed: int) -> list[torch.Tensor]:
    """``m = 1[|g| in the top ratio of all entries]`` with ``g = grad sum_batches -MSE(eps, (1+w) eps(x_t, c) -
    w eps(x_t, ""))`` over the forget set: the official ``SD/train-scripts/generate_mask.py`` (guidance ``w``,
    mean-reduced MSE per batch, gradients summed over batches)."""
    task = DiffusionTask(seed=seed)
    grads = [torch.zeros_like(p) for p in params]
    for start in range(0, len(prompts), batch_size):
        z = latents[start:start + batch_size]
        batch_prompts = list(prompts[start:start + batch_size])
        x_t, t, target = task.noised(model, z)
        with torch.no_grad():
            cond = model.encode_prompt(batch_prompts)
            null = model.encode_prompt([""] * len(batch_prompts))
        pred = (1 + guidance) * model.noise_prediction(x_t, t, cond) - guidance * model.noise_prediction(x_t, t, null)
        loss = -F.mse_loss(pred.float(), target.float())
        g = torch.autograd.grad(loss, list(params), allow_unused=True)
        for acc, gi in zip(grads, g):
            if gi is not None:
                acc.add_(gi)
    flat = torch.cat([g.abs().reshape(-1) for g in grads])
    k = max(1, int(round(ratio * flat.numel())))
    threshold = torch.topk(flat, k, sorted=True).values[-1]
    return [(g.abs() >= threshold).to(g.dtype) for g in grads]


@register_strategy("salun_diffusion")
class SalUnDiffusion(DiffusionStrategy):
    """SalUn for diffusion (Fan et al., ICLR 2024): a weight-saliency mask from the forget loss's gradient
    (:func:`diffusion_saliency_mask`), then masked fine-tuning where forget images under their own prompts are pushed
    to what the model predicts for a remapped prompt, plus the retain denoising loss:

    ``L = || eps_theta(x_t, c_f) - sg(eps_theta(x_t, c_remap)) ||^2 + alpha * E_retain || eps_theta(x_t, c) - eps ||^2``,
    gradients multiplied by the mask (non-salient weights stay exactly as they were: Adam without weight decay).

    Forget / retain data: ``(image, prompt)`` pairs, or prompts alone whose images the original model generates
    (``images_per_prompt``, ``generation_steps`` DDIM steps, guidance ``generation_guidance``). ``remap``: the
    prompt forget images are relabelled to (one for all, or a list aligned with the forget data; the official code
    uses the next class's description). Defaults from ``OPTML-Group/Unlearn-Saliency`` ``SD/train-scripts/
    random_label.py`` and ``generate_mask.py`` with the README's command: mask ``ratio`` 0.5, mask guidance 7.5,
    ``train_method`` ``"full"`` (the UNet; ``"cross_attn"``: ``attn2`` only), ``alpha`` 0.5, Adam lr 1e-5,
    5 epochs over the forget set, batch 8.
    """

    data_parallel = False

    defaults = {"lr": 1e-5, "optimizer": "adam", "batch_size": 8, "remap": None, "ratio": 0.5, "mask_guidance": 7.5,
                "alpha": 0.5, "train_method": "full", "images_per_prompt": 4, "generation_steps": 50,
                "generation_guidance": 7.5, "default_epochs": 5}
    retain = "required"

    def check_options(self, opts: Mapping[str, Any]) -> None:
        remap = opts["remap"]
        if remap is None:
            raise InvalidInputError("salun_diffusion needs remap= (the prompt forget images are relabelled to, e.g. "
                                    "another class's prompt): a prompt, or a list aligned with the forget data")
        if not (isinstance(remap, str) or (isinstance(remap, Sequence) and all(isinstance(r, str) for r in remap))):
            raise InvalidInputError(f"remap must be a prompt or a list of prompts, got {remap!r}")
        if not 0.0 < opts["ratio"] <= 1.0:
            raise InvalidInputError(f"ratio must be in (0, 1], got {opts['ratio']!r}")
        if opts["train_method"] not in TRAIN_METHODS:
            raise InvalidInputError(f"train_method must be one of {sorted(TRAIN_METHODS)}, got {opts['train_method']!r}")
        if opts["weight_decay"] != 0.0:
            raise InvalidInputError("SalUn masks gradients; weight_decay would still move non-salient weights, use 0")
        for key in ("images_per_prompt", "generation_steps"):
            if not isinstance(opts[key], int) or opts[key] <= 0:
                raise InvalidInputError(f"{key} must be a positive integer, got {opts[key]!r}")

    def _unlearn(self, model: Any, run: Run, *, remap: Any, ratio: float, mask_guidance: float, alpha: float,
                 train_method: str, images_per_prompt: int, generation_steps: int, generation_guidance: float,
                 default_epochs: float) -> Any:
        frozen = copy.deepcopy(model.unet).eval().requires_grad_(False)
        gen = {"per_prompt": images_per_prompt, "num_inference_steps": generation_steps,
               "guidance_scale": generation_guidance, "unet": frozen}
        forget_prompts = self.forget_prompts(run)
        remaps = [remap] * len(forget_prompts) if isinstance(remap, str) else list(remap)
        if len(remaps) != len(forget_prompts):
            raise InvalidInputError(f"remap has {len(remaps)} prompts but the forget data has {len(forget_prompts)}")
        remap_of = dict(zip(forget_prompts, remaps))
        z_f, p_f = latents_and_prompts(model, run.forget, seed=run.seed, **gen)
        z_r, p_r = latents_and_prompts(model, run.retain, seed=run.seed + 1, **gen)
        del frozen
        weights = item_weights(run, len(p_f))
        names = model.named_parameter_groups()[TRAIN_METHODS[train_method]]
        task = DiffusionTask(seed=run.seed)
        rng = random.Random(run.seed)
        with training_only(model, names) as params:
            masks = diffusion_saliency_mask(model, z_f, p_f, params, ratio=ratio, guidance=mask_guidance,
                                            batch_size=run.batch_size, seed=run.seed)
            self.info_ = {"salient_fraction": float(sum(m.sum() for m in masks) / sum(m.numel() for m in masks)),
                          "forget_latents": len(p_f), "retain_latents": len(p_r)}

            def loss(_: int) -> torch.Tensor:
                idx = draw(rng, len(p_f), run.batch_size, weights)
                x_t, t, _ = task.noised(model, z_f[idx])
                with torch.no_grad():
                    pseudo = model.noise_prediction(x_t, t, model.encode_prompt([remap_of[p_f[i]] for i in idx]))
                    own = model.encode_prompt([p_f[i] for i in idx])
                forget = F.mse_loss(model.noise_prediction(x_t, t, own).float(), pseudo.float())
                jdx = draw(rng, len(p_r), run.batch_size)
                x_r, t_r, target = task.noised(model, z_r[jdx])
                with torch.no_grad():
                    context = model.encode_prompt([p_r[j] for j in jdx])
                return forget + alpha * denoising_loss(model.noise_prediction(x_r, t_r, context), target).mean()

            def apply_mask() -> None:
                for p, m in zip(params, masks):
                    if p.grad is not None:
                        p.grad.mul_(m)

            steps = run.steps if run.steps is not None else max(1, int(round(
                (run.epochs if run.epochs is not None else default_epochs) * -(-len(p_f) // run.batch_size))))
            run.train(model, loss, num_steps=steps, desc="masked remap + retain", optimizer=run.make_optimizer(params),
                      before_step=apply_mask)
        return model
