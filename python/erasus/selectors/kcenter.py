"""Greedy k-center (Sener & Savarese, "Active Learning for Convolutional Neural Networks: A Core-Set
Approach", ICLR 2018), run in the Rust core with exact triangle-inequality pruning."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from .. import _core
from ..errors import InvalidInputError
from ..registry import register_selector
from ..selection import Selection
from ._geometry import row_indices, rust_seed, to_selection
from .base import Selector

__all__ = ["KCenterSelector"]

_METRICS = ("euclidean", "cosine")


@register_selector("kcenter")
class KCenterSelector(Selector):
    """Greedy k-center: ``u = argmax_{i not in S} min_{j in S} d(x_i, x_j)`` each step, a
    2-approximation of ``min_S max_i min_{j in S} d(x_i, x_j)`` (Gonzalez 1985).

    Args:
        seed: picks the random first center when ``initial`` is not given.
        metric: ``"euclidean"`` or ``"cosine"`` (``1 - cos``; a zero row is at distance 1 from all rows).
        initial: row indices that are already selected. They are not counted in ``k`` and not returned
            (the Sener & Savarese / DeepCore convention); without them a seeded random row starts the
            greedy and is the first of the ``k`` returned rows.

    ``gains[t]`` is the covering radius just before pick ``t`` (``inf`` for a random first pick) and is
    non-increasing; ``objective`` is the final covering radius. Weights are ones; labels are not used.
    The picks equal the textbook greedy exactly (ties go to the smaller row) on any number of threads;
    extra memory is 8 bytes per row (12 with ``metric="cosine"``).
    """

    def __init__(self, *, seed: int = 0, metric: Literal["euclidean", "cosine"] = "euclidean", initial: Any = None) -> None:
        if metric not in _METRICS:
            raise InvalidInputError(f"unknown metric {metric!r}; expected one of {_METRICS}")
        super().__init__(seed=seed, metric=metric, initial=initial)
        self.metric = metric
        self.initial = initial

    def _select(self, x: np.ndarray, k: int, *, labels: np.ndarray | None) -> Selection:
        initial = None
        if self.initial is not None:
            initial = row_indices(self.initial, x.shape[0], name="initial")
            if initial.size == 0:
                raise InvalidInputError("initial is empty; pass None to start from a seeded random row, or at least one row index")
        result = _core.kcenter(x, k, metric=self.metric, initial=initial, seed=rust_seed(self.seed))
        meta: dict[str, Any] = {"metric": self.metric}
        if initial is not None:
            meta["initial"] = initial.tolist()
        return to_selection(result, metadata=meta)
