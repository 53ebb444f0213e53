"""Uncertainty sampling scores: least confidence, entropy and margin (Settles, "Active Learning Literature Survey", 2009;
as used for coresets by Coleman et al., "Selection via Proxy", ICLR 2020)."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from ..errors import InvalidInputError
from ..registry import register_selector
from ..selection import Selection
from ._common import ContextSelector, model_outputs, score_selection
from .el2n import softmax

__all__ = ["UncertaintySelector", "uncertainty_scores"]

Measure = Literal["least_confidence", "entropy", "margin"]


def uncertainty_scores(p: np.ndarray, measure: Measure) -> np.ndarray:
    """Uncertainty of each row of probabilities ``p``; higher means more uncertain.

    least confidence ``1 - max_c p_c``; entropy ``-sum_c p_c log p_c``; margin ``1 - (p_(1) - p_(2))``.
    """
    if measure == "least_confidence":
        return 1.0 - p.max(axis=1)
    if measure == "entropy":
        return -(p * np.log(np.clip(p, 1e-300, None))).sum(axis=1)
    if measure == "margin":
        if p.shape[1] < 2:
            raise InvalidInputError("the margin measure needs at least 2 classes")
        top2 = np.sort(p, axis=1)[:, -2:]
        return 1.0 - (top2[:, 1] - top2[:, 0])
    raise InvalidInputError(f"measure must be 'least_confidence', 'entropy' or 'margin', got {measure!r}")


@register_selector("uncertainty")
class UncertaintySelector(ContextSelector):
    """Uncertainty (Settles 2009; Coleman et al. 2020): keeps the ``k`` samples the model is least sure about.

    ``measure="least_confidence"`` (``1 - max p``), ``"entropy"`` (``-sum p log p``) or ``"margin"``
    (``1 - (p_top1 - p_top2)``). ``features`` are logits ``(n, C)`` (probabilities with ``from_logits=False``);
    with ``model=`` and ``data=`` the task adapter computes the logits. No labels needed.
    """

    def __init__(self, *, seed: int = 0, measure: Measure = "least_confidence", from_logits: bool = True,
                 batch_size: int | None = None) -> None:
        if measure not in ("least_confidence", "entropy", "margin"):
            raise InvalidInputError(f"measure must be 'least_confidence', 'entropy' or 'margin', got {measure!r}")
        super().__init__(seed=seed, measure=measure, from_logits=from_logits, batch_size=batch_size)
        self.measure, self.from_logits, self.batch_size = measure, bool(from_logits), batch_size

    def _from_model(self, model: Any, data: Any, *, task: Any, context: dict[str, Any]) -> tuple[Any, Any]:
        logits, labels = model_outputs(model, data, task=task, batch_size=self.batch_size)
        if logits.ndim != 2:
            raise InvalidInputError(f"uncertainty needs per-sample class logits (n, C), the model gave {tuple(logits.shape)}")
        return logits.double().numpy(), labels

    def _select(self, x: np.ndarray, k: int, *, labels: np.ndarray | None) -> Selection:
        if self.from_logits:
            p = softmax(x)
        else:
            p = x.astype(np.float64)
            if np.any(p < 0) or not np.allclose(p.sum(axis=1), 1.0, atol=1e-3):
                raise InvalidInputError("with from_logits=False the features must be probabilities (rows >= 0 summing to 1)")
        return score_selection(uncertainty_scores(p, self.measure), k, metadata={"measure": self.measure})
