"""Gradient ascent on the forget set."""

from __future__ import annotations

import torch

from ..registry import register_strategy
from .base import Run, UnlearningStrategy

__all__ = ["GradientAscent"]


@register_strategy("gradient_ascent")
class GradientAscent(UnlearningStrategy):
    """Gradient ascent (GA, "NegGrad"; Golatkar et al. CVPR 2020, Thudi et al. EuroS&P 2022):
    ``theta <- theta + eta * grad L_f`` with ``L_f = sum_i w_i l_i / sum_i w_i`` over the forget set.

    It ignores the retain set and diverges if run too long: keep the budget small. Defaults follow the
    SalUn benchmark (Fan et al. 2024): lr 1e-4 (searched in [1e-5, 1e-3]), 5 epochs, SGD momentum 0.9.
    """

    defaults = {"lr": 1e-4, "default_epochs": 5}
    retain = "unused"

    def _unlearn(self, model: torch.nn.Module, run: Run, *, default_epochs: float) -> torch.nn.Module:
        stream = run.forget_stream()

        def loss(_: int) -> torch.Tensor:
            batch, w = next(stream)
            return -run.forget_loss(model, batch, w)

        run.train(model, loss, num_steps=run.num_steps(default_epochs), desc="ascend forget loss")
        return model
