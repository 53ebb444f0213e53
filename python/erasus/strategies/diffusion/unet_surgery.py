"""UNet surgery: Scissorhands (Wu & Harandi, "Scissorhands: Scrub Data Influence via Connection Sensitivity in
Networks", ECCV 2024), its Stable Diffusion recipe."""

from __future__ import annotations

import copy
import random
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from ...errors import InvalidInputError
from ...registry import register_strategy
from ...tasks.diffusion import DiffusionTask, denoising_loss
from ..base import Run
from .common import DiffusionStrategy, draw, item_weights, latents_and_prompts, training_only

__all__ = ["UNetSurgery", "connection_sensitivity"]


def connection_sensitivity(model: Any, latents: torch.Tensor, prompts: Sequence[str],
                           params: Sequence[torch.nn.Parameter], *, guidance: float, batches: int, batch_size: int,
                           seed: int) -> list[torch.Tensor]:
    """SNIP connection sensitivity ``s = |theta * sum_b |grad_theta L_b||`` (Lee et al., ICLR 2019) of the
    classifier-free-guided denoising loss ``L = MSE(eps, (1+w) eps(x_t, c) - w eps(x_t, ""))`` over ``batches``
    forget batches, as ``snip`` of the official ``SD/shs_cls.py`` computes it."""
    task = DiffusionTask(seed=seed)
    rng = random.Random(seed)
    grads = [torch.zeros_like(p) for p in params]
    for _ in range(batches):
        idx = [rng.randrange(len(prompts)) for _ in range(min(batch_size, len(prompts)))]
        x_t, t, target = task.noised(model, latents[idx])
        with torch.no_grad():
            cond = model.encode_prompt([prompts[i] for i in idx])
            null = model.encode_prompt([""] * len(idx))
        pred = (1 + guidance) * model.noise_prediction(x_t, t, cond) - guidance * model.noise_prediction(x_t, t, null)
        loss = torch.nn.functional.mse_loss(target.float(), pred.float())
        for acc, g in zip(grads, torch.autograd.grad(loss, list(params), allow_unused=True)):
            if g is not None:
                acc.add_(g.abs())
    return [(g * p.detach()).abs() for g, p in zip(grads, params)]


@register_strategy("unet_surgery")
class UNetSurgery(DiffusionStrategy):
    """UNet surgery by Scissorhands (Wu & Harandi, ECCV 2024): trim the UNet weights most connected to the forget
    concept, then repair on the retain data.

    1. Connection sensitivity (:func:`connection_sensitivity`) on ``prune_batches`` forget batches; the weights above
       the ``sparsity`` quantile of all saliencies (the top ``1 - sparsity``) are re-initialised (weights from a
       truncated normal with std 0.02, biases to zero), within the parameters named by ``trim_modules``.
    2. Repair: ``min L_retain - lam * L_forget`` (denoising losses) on the ``train_method`` parameters.

    Forget / retain data: ``(image, prompt)`` pairs, or prompts whose images the original model generates
    (``images_per_prompt``, ``generation_steps``, ``generation_guidance``). Defaults from ``JingWu321/Scissorhands``
    ``SD/shs_cls.py`` and ``SD/train_shs.sh`` (class forgetting): ``sparsity`` 0.999, ``lam`` 0.1, 10 prune batches,
    mask guidance 7.5, Adam lr 2e-5, 3 epochs, ``train_method`` ``"full"``, batch 8.
    Deviation: the official script re-initialises salient weights only in the self-attention (``attn1``) of two SD
    1.4 decoder blocks (CompVis ``output_blocks.4`` / ``.7``, diffusers ``up_blocks.1.attentions.1`` /
    ``up_blocks.2.attentions.1``), a layout-specific choice; here ``trim_modules=None`` trims salient weights anywhere
    in the UNet, and a list of name fragments (e.g. those two blocks' ``attn1``) restricts it as the official run does.
    """

    defaults = {"lr": 2e-5, "optimizer": "adam", "batch_size": 8, "sparsity": 0.999, "lam": 0.1, "prune_batches": 10,
                "mask_guidance": 7.5, "trim_modules": None, "train_method": "full", "images_per_prompt": 4,
                "generation_steps": 50, "generation_guidance": 7.5, "default_epochs": 3}
    retain = "required"

    def check_options(self, opts: Mapping[str, Any]) -> None:
        if not 0.0 <= opts["sparsity"] < 1.0:
            raise InvalidInputError(f"sparsity must be in [0, 1) (the share of weights kept), got {opts['sparsity']!r}")
        if opts["train_method"] not in ("full", "cross_attn", "non_cross_attn"):
            raise InvalidInputError(f"train_method must be 'full', 'cross_attn' or 'non_cross_attn', got "
                                    f"{opts['train_method']!r}")
        trim = opts["trim_modules"]
        if trim is not None and (isinstance(trim, str) or not all(isinstance(t, str) and t for t in trim)):
            raise InvalidInputError(f"trim_modules must be None or a list of module name fragments, got {trim!r}")
        for key in ("prune_batches", "images_per_prompt", "generation_steps"):
            if not isinstance(opts[key], int) or opts[key] <= 0:
                raise InvalidInputError(f"{key} must be a positive integer, got {opts[key]!r}")

    def _unlearn(self, model: Any, run: Run, *, sparsity: float, lam: float, prune_batches: int,
                 mask_guidance: float, trim_modules: Sequence[str] | None, train_method: str,
                 images_per_prompt: int, generation_steps: int, generation_guidance: float,
                 default_epochs: float) -> Any:
        frozen = copy.deepcopy(model.unet).eval().requires_grad_(False)
        gen = {"per_prompt": images_per_prompt, "num_inference_steps": generation_steps,
               "guidance_scale": generation_guidance, "unet": frozen}
        z_f, p_f = latents_and_prompts(model, run.forget, seed=run.seed, **gen)
        z_r, p_r = latents_and_prompts(model, run.retain, seed=run.seed + 1, **gen)
        del frozen
        groups = model.named_parameter_groups()
        unet_names = groups["unet"]
        trimmed = 0
        with training_only(model, unet_names) as unet_params:
            saliency = connection_sensitivity(model, z_f, p_f, unet_params, guidance=mask_guidance,
                                              batches=prune_batches, batch_size=run.batch_size, seed=run.seed)
            flat = torch.cat([s.reshape(-1) for s in saliency])
            k = max(1, int(sparsity * flat.numel()))
            threshold = float(flat.kthvalue(k).values)
            generator = torch.Generator().manual_seed(run.seed)
            with torch.no_grad():
                for name, p, s in zip(unet_names, unet_params, saliency):
                    if trim_modules is not None and not any(f in name for f in trim_modules):
                        continue
                    hit = s > threshold
                    if not bool(hit.any()):
                        continue
                    if name.endswith("bias") or p.ndim == 1:
                        fresh = torch.zeros_like(p)
                    else:
                        fresh = (torch.randn(p.shape, generator=generator) * 0.02).clamp_(-0.04, 0.04).to(p)
                    p.copy_(torch.where(hit, fresh, p))
                    trimmed += int(hit.sum())
        if trim_modules is not None and trimmed == 0:
            raise InvalidInputError(f"trim_modules {list(trim_modules)} matched no salient UNet weight; check the names "
                                    "against model.named_parameter_groups()['unet']")
        names = {"full": unet_names, "cross_attn": groups["cross_attn"], "non_cross_attn": groups["non_cross_attn"]}
        task = DiffusionTask(seed=run.seed + 2)
        rng = random.Random(run.seed)
        weights = item_weights(run, len(p_f))

        def loss(_: int) -> torch.Tensor:
            def denoise(z: torch.Tensor, prompts: list[str], w: list[float] | None = None) -> torch.Tensor:
                idx = draw(rng, len(prompts), run.batch_size, w)
                x_t, t, target = task.noised(model, z[idx])
                with torch.no_grad():
                    context = model.encode_prompt([prompts[i] for i in idx])
                return denoising_loss(model.noise_prediction(x_t, t, context), target).mean()

            return denoise(z_r, p_r) - lam * denoise(z_f, p_f, weights)

        steps = run.steps if run.steps is not None else max(1, int(round(
            (run.epochs if run.epochs is not None else default_epochs) * -(-len(p_f) // run.batch_size))))
        with training_only(model, names[train_method]) as params:
            run.train(model, loss, num_steps=steps, desc="repair: retain - lam * forget",
                      optimizer=run.make_optimizer(params))
        self.info_ = {"trimmed_weights": trimmed, "threshold": threshold}
        return model
