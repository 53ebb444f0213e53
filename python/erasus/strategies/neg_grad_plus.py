"""NegGrad+: a convex combination of retain descent and forget ascent."""

from __future__ import annotations

import torch

from ..errors import InvalidInputError
from ..registry import register_strategy
from .base import Run, UnlearningStrategy

__all__ = ["NegGradPlus"]


@register_strategy("neg_grad_plus")
class NegGradPlus(UnlearningStrategy):
    """NegGrad+ (Kurmanji et al., "Towards Unbounded Machine Unlearning", NeurIPS 2023):
    ``min_theta  beta * L_r(theta) - (1 - beta) * L_f(theta)``, with ``L_f = sum_i w_i l_i / sum_i w_i``.

    The paper tunes ``beta`` per experiment (the authors' code uses values close to 1); default ``beta = 0.95``,
    lr 1e-3, 5 epochs over the forget set, SGD momentum 0.9.
    """

    defaults = {"lr": 1e-3, "beta": 0.95, "default_epochs": 5}
    retain = "required"

    def _unlearn(self, model: torch.nn.Module, run: Run, *, beta: float, default_epochs: float) -> torch.nn.Module:
        if not 0.0 <= beta <= 1.0:
            raise InvalidInputError(f"beta must be in [0, 1], got {beta}")
        forget, retain = run.forget_stream(), run.retain_stream()

        def loss(_: int) -> torch.Tensor:
            batch, w = next(forget)
            return beta * run.task.loss(model, next(retain)) - (1.0 - beta) * run.forget_loss(model, batch, w)

        run.train(model, loss, num_steps=run.num_steps(default_epochs), desc="NegGrad+")
        return model
