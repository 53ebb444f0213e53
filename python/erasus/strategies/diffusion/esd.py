"""ESD: Erased Stable Diffusion (Gandikota et al., "Erasing Concepts from Diffusion Models", ICCV 2023)."""

from __future__ import annotations

import copy
import math
import random
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from ...errors import InvalidInputError
from ...registry import register_strategy
from ..base import Run
from .common import WEIGHT_LAYERS, DiffusionStrategy, draw, item_weights, training_only

__all__ = ["ESD", "esd_parameter_names", "esd_target"]

#: variant -> the wrapper's parameter group it trains (Linear / Conv2d weights and biases within it)
VARIANTS = {"x": "cross_attn", "x_strict": "cross_attn_kv", "u": "non_cross_attn", "all": "unet"}


def esd_parameter_names(model: Any, variant: str) -> list[str]:
    """The parameters ESD-``variant`` trains, as ``get_esd_trainable_parameters`` of the official ``esd_sd.py`` picks
    them: weights of ``Linear`` / ``Conv2d`` modules in ``attn2`` (x), in ``attn2.to_k`` / ``to_v`` (x_strict),
    outside ``attn2`` (u) or anywhere in the UNet (all)."""
    if variant not in VARIANTS:
        raise InvalidInputError(f"unknown ESD variant {variant!r}; expected one of {sorted(VARIANTS)}")
    return model.named_parameter_groups(layer_types=WEIGHT_LAYERS)[VARIANTS[variant]]


def esd_target(eps_from: torch.Tensor, eps_concept: torch.Tensor, eps_null: torch.Tensor, *,
               negative_guidance: float) -> torch.Tensor:
    """``eps_base(x_t, c_from) - eta * (eps_base(x_t, c) - eps_base(x_t, ""))``: the frozen model's prediction
    guided away from the concept (the ESD paper's Eq. 7, with ``c_from = c`` unless erasing *from* a concept)."""
    return eps_from - negative_guidance * (eps_concept - eps_null)


@register_strategy("esd")
class ESD(DiffusionStrategy):
    """ESD (Gandikota et al., ICCV 2023): fine-tune the UNet so that its prediction for the erased concept ``c``
    follows negative guidance away from it, computed by a frozen copy of the original model.

    Each step draws ``k`` uniformly in ``[0, num_inference_steps)``, samples ``x_t`` from noise with the frozen model
    for ``k`` classifier-free-guided steps (guidance ``guidance_scale``) of the prompt, and minimises
    ``|| eps_theta(x_t, c) - [eps_base(x_t, c_from) - eta (eps_base(x_t, c) - eps_base(x_t, ""))] ||^2``.
    With ``erase_from`` (a broader concept, e.g. erase "van gogh" from "painting") ``x_t`` is sampled from and the
    model trained on ``c_from``, as the official code does.

    Variants: ``x`` every ``attn2`` (cross-attention) Linear weight, ``x_strict`` only ``attn2.to_k`` / ``to_v``,
    ``u`` every Linear / Conv2d weight outside ``attn2``, ``all`` every Linear / Conv2d weight of the UNet. Every
    other parameter (norms, the text encoder, the VAE) stays bit-identical.

    Forget data: the concept's prompts (one is drawn per sample, ``batch_size`` per step; official: batch 1; with
    coreset ``weights`` prompt ``i`` is drawn with probability ``w_i / sum w``).
    Defaults from the official ``rohitgandikota/erasing`` ``esd_sd.py``: Adam, lr 5e-5, 200 iterations,
    ``negative_guidance`` 2, ``guidance_scale`` 3, ``num_inference_steps`` 50. Deviation: sampling uses the wrapper's
    scheduler (the official script uses the pipeline's), with a seeded CPU generator.
    """

    defaults = {"lr": 5e-5, "optimizer": "adam", "batch_size": 1, "variant": "x", "negative_guidance": 2.0,
                "guidance_scale": 3.0, "num_inference_steps": 50, "erase_from": None, "default_steps": 200}
    retain = "unused"

    def check_options(self, opts: Mapping[str, Any]) -> None:
        if opts["variant"] not in VARIANTS:
            raise InvalidInputError(f"unknown ESD variant {opts['variant']!r}; expected one of {sorted(VARIANTS)}")
        steps = opts["num_inference_steps"]
        if not isinstance(steps, int) or steps <= 0:
            raise InvalidInputError(f"num_inference_steps must be a positive integer, got {steps!r}")
        for key in ("negative_guidance", "guidance_scale"):
            value = opts[key]
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise InvalidInputError(f"{key} must be a finite number, got {value!r}")
        if opts["erase_from"] is not None and not (isinstance(opts["erase_from"], str) and opts["erase_from"].strip()):
            raise InvalidInputError(f"erase_from must be a non-empty prompt or None, got {opts['erase_from']!r}")

    def _unlearn(self, model: Any, run: Run, *, variant: str, negative_guidance: float, guidance_scale: float,
                 num_inference_steps: int, erase_from: str | None, default_steps: int) -> Any:
        prompts = self.forget_prompts(run)
        names = esd_parameter_names(model, variant)
        frozen = copy.deepcopy(model.unet).eval().requires_grad_(False)
        rng = random.Random(run.seed)
        weights = item_weights(run, len(prompts))
        with torch.no_grad():
            null = model.encode_prompt([""])
            source = model.encode_prompt([erase_from]) if erase_from is not None else None

        def loss(_: int) -> torch.Tensor:
            batch = [prompts[i] for i in draw(rng, len(prompts), run.batch_size, weights)]
            k = rng.randrange(num_inference_steps)
            with torch.no_grad():
                concept = model.encode_prompt(batch)
                start = batch if erase_from is None else [erase_from] * len(batch)
                x_t, t = model.sample(start, num_inference_steps=num_inference_steps, guidance_scale=guidance_scale,
                                      seed=rng.randrange(2**31), stop_at=k, unet=frozen)
                b = x_t.shape[0]
                eps_c = frozen(x_t, t.expand(b), encoder_hidden_states=concept).sample
                eps_0 = frozen(x_t, t.expand(b), encoder_hidden_states=null.expand(b, -1, -1)).sample
                eps_from = eps_c if source is None else \
                    frozen(x_t, t.expand(b), encoder_hidden_states=source.expand(b, -1, -1)).sample
                target = esd_target(eps_from, eps_c, eps_0, negative_guidance=negative_guidance)
            context = concept if source is None else source.expand(b, -1, -1)
            return F.mse_loss(model.noise_prediction(x_t, t, context).float(), target.float())

        with training_only(model, names) as params:
            run.train(model, loss, num_steps=self.budget(run, default_steps, len(prompts)),
                      desc=f"ESD-{variant}", optimizer=run.make_optimizer(params))
        self.info_ = {"variant": variant, "trained_parameters": len(names)}
        return model
