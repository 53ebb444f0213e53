"""Representation Misdirection for Unlearning (Li et al., "The WMDP Benchmark: Measuring and Reducing
Malicious Use with Unlearning", ICML 2024)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ...distributed.wrappers import unwrap, wrapper_kind
from ...errors import InvalidInputError
from ...models.llm import activation_hooks, decoder_layers, mlp_output_projection
from ...registry import register_strategy
from ...tasks.base import reduce_loss
from ..base import Run
from .common import LLMStrategy, frozen_reference

__all__ = ["RMU", "rmu_forget_loss", "rmu_retain_loss"]


def _masked_mse(h: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-sample mean over real tokens and hidden units of ``(h - target)^2``, shape (B,)."""
    m = mask.to(h.dtype).unsqueeze(-1)
    sq = (h.float() - target.float()).square() * m
    return sq.sum((1, 2)) / (m.sum((1, 2)) * h.shape[-1]).clamp(min=1)


def rmu_forget_loss(h: torch.Tensor, control: torch.Tensor, mask: torch.Tensor, *,
                    weights: torch.Tensor | None = None) -> torch.Tensor:
    """``E ||h_l(x_f) - c u||^2`` (per-element mean, as WMDP's ``mse_loss``) over the real tokens of forget samples."""
    return reduce_loss(_masked_mse(h, control.expand_as(h), mask), weights)


def rmu_retain_loss(h: torch.Tensor, h_frozen: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``E ||h_l(x_r) - h_l^frozen(x_r)||^2`` over the real tokens of retain samples."""
    return _masked_mse(h, h_frozen, mask).mean()


@register_strategy("rmu")
class RMU(LLMStrategy):
    """RMU: ``L = E_f ||h_l - c u||^2 + alpha E_r ||h_l - h_l^frozen||^2``, ``u`` a fixed random unit vector
    (uniform [0,1) entries, normalized, seeded), ``h_l`` the output of block ``layer``, both squared norms
    per-element means as WMDP's ``mse_loss``.

    Trained parameters, as ``centerforaisafety/wmdp`` ``rmu/unlearn.py`` (``--layer_ids 5,6,7 --param_ids 6``,
    and index 6 of a Mistral block's parameters is ``mlp.down_proj.weight``): only the weight of the MLP output
    projection (:func:`erasus.models.llm.mlp_output_projection`; ``c_proj`` in GPT-2; its adapters under LoRA)
    of blocks ``update_layers``, default ``layer-2 .. layer``. ``param_filter="mlp"`` (a name substring) trains
    every matching parameter of those blocks instead (gate/up/down projections and biases).

    Defaults (WMDP's README run on Zephyr-7B): ``steering_coeff c = 6.5``, ``alpha = 1200``, AdamW lr 5e-5
    (weight decay 0 as ``transformers.AdamW``; torch's eps 1e-8 rather than its 1e-6); ``layer`` defaults to the
    middle block (7 of 32 in the paper; tiny models need a different choice). Deviation: WMDP averages over
    every position of the padded batch; erasus averages over the real (attention-mask) tokens of each sample,
    so padding does not pull activations towards the control vector. On unpadded batches the two agree.

    ``steering_coeff="adaptive"`` is Adaptive RMU (Dang et al., "On Effects of Steering Latent Representation
    for Large Language Model Unlearning", AAAI 2025): ``c = adaptive_scale * E ||h_l(x_f)||``, the mean
    per-token activation norm of the first forget batch before any update times ``adaptive_scale`` (their
    beta, default 5). A fixed ``c`` tuned for one model's activation scale barely moves another's (SmolLM2's
    layer-7 tokens have norms ~100, so ``c = 6.5`` asks for near-zero activations against a 1200x retain term).
    """

    retain = "required"
    llm_defaults = {"lr": 5e-5, "layer": None, "update_layers": None, "steering_coeff": 6.5, "alpha": 1200.0,
                    "adaptive_scale": 5.0, "param_filter": None, "default_epochs": 1}

    def _unlearn_lm(self, model: torch.nn.Module, run: Run, *, layer: int | None, update_layers: Sequence[int] | None,
                    steering_coeff: float | str, alpha: float, adaptive_scale: float, param_filter: str | None,
                    default_epochs: float) -> torch.nn.Module:
        given = model
        if wrapper_kind(model) == "ddp":
            # DDP's reducer waits for gradients of every parameter it was built with, and RMU trains a few weights
            # on hooked hidden states: train the inner module, whose gradients Run.train averages itself
            model = model.module
        adaptive = steering_coeff == "adaptive"
        if not adaptive and not (isinstance(steering_coeff, (int, float)) and steering_coeff > 0):
            raise InvalidInputError(f"steering_coeff must be a positive number or 'adaptive', got {steering_coeff!r}")
        if adaptive and not adaptive_scale > 0:
            raise InvalidInputError(f"adaptive_scale must be positive, got {adaptive_scale!r}")
        blocks = decoder_layers(model)
        n = len(blocks)
        layer = n // 2 if layer is None else int(layer)
        if not 0 <= layer < n:
            raise InvalidInputError(f"layer must be in [0, {n}), got {layer}")
        update = list(range(max(0, layer - 2), layer + 1)) if update_layers is None else [int(i) for i in update_layers]
        if any(not 0 <= i < n for i in update):
            raise InvalidInputError(f"update_layers must lie in [0, {n}), got {update}")
        if param_filter is None:
            # the weight (WMDP has no biases to train); under LoRA, that projection's adapters
            params = [p for i in update for name, p in mlp_output_projection(blocks[i])[1].named_parameters()
                      if p.requires_grad and not name.endswith("bias")]
        else:
            params = [p for i in update for name, p in blocks[i].named_parameters()
                      if param_filter in name and p.requires_grad]
        if not params:
            what = "MLP output projections" if param_filter is None else f"parameters matching {param_filter!r}"
            raise InvalidInputError(f"no trainable {what} in blocks {update}")
        trainable = {id(p) for p in params}
        flags = [(p, p.requires_grad) for p in model.parameters()]
        for p in model.parameters():
            p.requires_grad_(id(p) in trainable)
        hidden = int(getattr(getattr(unwrap(model), "config", None), "hidden_size", 0) or 0)
        ref = frozen_reference(model, run)
        gen = torch.Generator().manual_seed(run.seed)
        forget, retain = run.forget_stream(), run.retain_stream()
        control: list[torch.Tensor] = []

        def acts(m: torch.nn.Module, batch: Any, *, detach: bool) -> torch.Tensor:
            with activation_hooks(m, [layer], detach=detach) as out:
                run.task.outputs(m, batch)
            return out[layer]

        def loss(_: int) -> torch.Tensor:
            fb, w = next(forget)
            rb = next(retain)
            h_f = acts(model, fb, detach=False)
            if not control:
                u = torch.rand(1, 1, hidden or h_f.shape[-1], generator=gen)
                if adaptive:  # mean over samples of the mean token norm, as in Dang et al.
                    m = fb["attention_mask"].to(h_f.dtype)
                    token_norm = h_f.detach().float().norm(dim=-1)
                    c = adaptive_scale * float(((token_norm * m).sum(1) / m.sum(1).clamp(min=1)).mean())
                else:
                    c = float(steering_coeff)
                control.append((u / u.norm() * c).to(h_f.device))
            h_r = acts(model, rb, detach=False)
            h_r0 = ref(lambda m: acts(m, rb, detach=True))
            return (rmu_forget_loss(h_f, control[0], fb["attention_mask"], weights=w)
                    + alpha * rmu_retain_loss(h_r, h_r0, rb["attention_mask"]))

        try:
            self.train(model, run, loss, num_steps=run.num_steps(default_epochs), desc="RMU",
                       optimizer=run.make_optimizer(params))
        finally:
            for p, flag in flags:
                p.requires_grad_(flag)
        self.info_["control_norm"] = float(control[0].norm()) if control else None
        return given
