"""The whole set: the 100% baseline (unlearning on every forget sample)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..registry import register_selector
from ..selection import Selection
from .base import Selector

__all__ = ["FullSelector"]


@register_selector("full")
class FullSelector(Selector):
    """Every row, in order, with unit weights.

    ``k`` / ``ratio`` are validated as for any selector but otherwise ignored (the result always has
    all n rows), so a pipeline configured with a prune ratio runs its no-pruning baseline unchanged;
    with neither given, ``select`` takes all rows.
    """

    def __init__(self, *, seed: int = 0) -> None:
        super().__init__(seed=seed)

    def select(self, k: int | None = None, *, ratio: float | None = None, **kwargs: Any) -> Selection:
        if k is None and ratio is None:
            ratio = 1.0
        return super().select(k, ratio=ratio, **kwargs)

    def _select(self, x: np.ndarray, k: int, *, labels: np.ndarray | None) -> Selection:
        n = x.shape[0]
        return Selection(np.arange(n, dtype=np.int64), np.ones(n, dtype=np.float32), metadata={"requested_k": k})
