"""l1-sparse unlearning: retain fine-tuning with a decaying l1 penalty."""

from __future__ import annotations

import torch

from ..errors import InvalidInputError
from ..registry import register_strategy
from .base import Run, UnlearningStrategy

__all__ = ["L1Sparse"]


@register_strategy("l1_sparse")
class L1Sparse(UnlearningStrategy):
    """l1-sparse (Jia et al., "Model Sparsity Can Simplify Machine Unlearning", NeurIPS 2023):
    ``min_theta  E_r[CE(theta; x, y)] + gamma_t * ||theta||_1`` with the paper's linearly decaying schedule
    ``gamma_t = gamma * (1 - t / T)``.

    Defaults: ``gamma = 5e-4``, lr 0.01, 10 epochs over the retain set, SGD momentum 0.9. Like fine-tuning it
    does not read the forget samples (their ``weights`` are not used).
    """

    defaults = {"lr": 0.01, "gamma": 5e-4, "schedule": "linear", "default_epochs": 10}
    retain = "required"

    def _unlearn(
        self, model: torch.nn.Module, run: Run, *, gamma: float, schedule: str, default_epochs: float
    ) -> torch.nn.Module:
        if schedule not in ("linear", "constant"):
            raise InvalidInputError(f"schedule must be 'linear' or 'constant', got {schedule!r}")
        stream = run.retain_stream()
        params = run.trainable(model)
        total = run.num_steps(default_epochs, which="retain")

        def loss(step: int) -> torch.Tensor:
            g = gamma * (1.0 - step / total) if schedule == "linear" else gamma
            return run.task.loss(model, next(stream)) + g * sum(p.abs().sum() for p in params)

        run.train(model, loss, num_steps=total, desc="retain + l1")
        return model
