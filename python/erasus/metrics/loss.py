"""Mean per-sample loss on the forget, retain and test splits (any task: CE, next-token NLL, InfoNCE)."""

from __future__ import annotations

from typing import Any

import torch

from ..errors import InvalidInputError, NonFiniteError
from ..registry import register_metric
from .base import Metric

__all__ = ["mean_loss", "LossMetric"]


def mean_loss(losses: torch.Tensor) -> float:
    """``mean_i l_i`` of per-sample losses, in float64."""
    losses = torch.as_tensor(losses).reshape(-1)
    if losses.numel() == 0:
        raise InvalidInputError("mean_loss needs at least one per-sample loss")
    if not bool(torch.isfinite(losses).all()):
        raise NonFiniteError("the per-sample losses contain NaN or infinity")
    return float(losses.double().mean())


@register_metric("loss")
class LossMetric(Metric):
    """Mean task loss (:meth:`Task.per_sample_loss`) on each split given; keys ``{split}_loss``."""

    inputs = ("forget", "retain", "test")

    def compute(self, model: torch.nn.Module, forget: Any = None, retain: Any = None, test: Any = None
                ) -> dict[str, float]:
        splits = {"forget": forget, "retain": retain, "test": test}
        if all(v is None for v in splits.values()):
            raise InvalidInputError("loss needs at least one of forget=, retain=, test=")
        return {
            f"{split}_loss": mean_loss(self._collect(model, data, logits=False, losses=True).losses)  # type: ignore[arg-type]
            for split, data in splits.items()
            if data is not None
        }
