"""Gradient difference: ascend on the forget set while descending on the retain set."""

from __future__ import annotations

import torch

from ..registry import register_strategy
from .base import Run, UnlearningStrategy

__all__ = ["GradDiff"]


@register_strategy("grad_diff")
class GradDiff(UnlearningStrategy):
    """GradDiff (Liu et al., CoLLAs 2022; the TOFU baseline of Maini et al. 2024):
    ``min_theta  -L_f(theta) + alpha * L_r(theta)``, ``L_f = sum_i w_i l_i / sum_i w_i`` on forget batches,
    ``L_r`` the mean loss on retain batches drawn alongside.

    Defaults: ``alpha = 1`` (TOFU), lr 1e-4, 5 epochs over the forget set, SGD momentum 0.9.
    """

    defaults = {"lr": 1e-4, "alpha": 1.0, "default_epochs": 5}
    retain = "required"

    def _unlearn(self, model: torch.nn.Module, run: Run, *, alpha: float, default_epochs: float) -> torch.nn.Module:
        forget, retain = run.forget_stream(), run.retain_stream()

        def loss(_: int) -> torch.Tensor:
            batch, w = next(forget)
            return -run.forget_loss(model, batch, w) + alpha * run.task.loss(model, next(retain))

        run.train(model, loss, num_steps=run.num_steps(default_epochs), desc="forget ascent + retain descent")
        return model
