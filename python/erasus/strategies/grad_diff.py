"""Gradient difference: ascend on the forget set while descending on the retain set."""

from __future__ import annotations

from typing import Any

import torch

from ..errors import InvalidInputError
from ..registry import register_strategy
from .base import Run, UnlearningStrategy, per_sample_kl
from .llm.common import frozen_reference

__all__ = ["GradDiff"]


@register_strategy("grad_diff")
class GradDiff(UnlearningStrategy):
    """GradDiff (Liu et al., CoLLAs 2022; the TOFU baseline of Maini et al. 2024):
    ``min_theta  -L_f(theta) + alpha * L_r(theta)``, ``L_f = sum_i w_i l_i / sum_i w_i`` on forget batches,
    ``L_r`` the mean loss on retain batches drawn alongside: the task loss (``retain_loss="nll"``) or, with
    ``retain_loss="kl"`` (OpenUnlearning's GradDiff KL variant), ``KL(p_original || p_theta)`` of the outputs
    against a frozen copy of the model before unlearning (mean over any token axes).

    Defaults: ``alpha = 1`` (TOFU), lr 1e-4, 5 epochs over the forget set, SGD momentum 0.9.
    """

    defaults = {"lr": 1e-4, "alpha": 1.0, "default_epochs": 5, "retain_loss": "nll"}
    retain = "required"

    def _unlearn(self, model: torch.nn.Module, run: Run, *, alpha: float, default_epochs: float,
                 retain_loss: str) -> torch.nn.Module:
        if retain_loss not in ("nll", "kl"):
            raise InvalidInputError(f"retain_loss must be 'nll' or 'kl', got {retain_loss!r}")
        forget, retain = run.forget_stream(), run.retain_stream()
        # the starting model without a full copy where it can (the caller's untouched model; under FSDP2 this
        # rank's shards), so the KL variant runs on sharded models too
        frozen = frozen_reference(model, run) if retain_loss == "kl" else None

        def retain_term(batch: Any) -> torch.Tensor:
            if frozen is None:
                return run.task.loss(model, batch)
            teacher = frozen(lambda m: run.task.outputs(m, batch))
            return per_sample_kl(run.task.outputs(model, batch), teacher).mean()

        def loss(_: int) -> torch.Tensor:
            batch, w = next(forget)
            return -run.forget_loss(model, batch, w) + alpha * retain_term(next(retain))

        run.train(model, loss, num_steps=run.num_steps(default_epochs), desc="forget ascent + retain descent")
        return model
