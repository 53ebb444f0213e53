"""Greedy k-center (Sener & Savarese, "Active Learning for Convolutional Neural Networks: A Core-Set
Approach", ICLR 2018), run in the Rust core with exact triangle-inequality pruning."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from .. import _core
from ..errors import InvalidInputError
from ..registry import register_selector
from ..selection import Selection
from ._geometry import TorchTwin, row_indices, rust_seed, to_selection
from ._torch import check_backend
from .base import Selector

__all__ = ["KCenterSelector"]

_METRICS = ("euclidean", "cosine")


@register_selector("kcenter")
class KCenterSelector(TorchTwin, Selector):
    """Greedy k-center: ``u = argmax_{i not in S} min_{j in S} d(x_i, x_j)`` each step, a
    2-approximation of ``min_S max_i min_{j in S} d(x_i, x_j)`` (Gonzalez 1985).

    Args:
        seed: picks the random first center when ``initial`` is not given.
        metric: ``"euclidean"`` or ``"cosine"`` (``1 - cos``; a zero row is at distance 1 from all rows).
        initial: row indices that are already selected. They are not counted in ``k`` and not returned
            (the Sener & Savarese / DeepCore convention); without them a seeded random row starts the
            greedy and is the first of the ``k`` returned rows.
        backend: ``"auto"`` (default: the Rust core, except that a CUDA tensor is selected on its device with torch
            ops, and ``block_rows`` or an ``np.memmap`` larger than half the RAM streams row blocks through torch),
            ``"rust"`` or ``"torch"`` (the torch twin on the tensor's device; the same picks up to float ties).
        block_rows: rows per block of the streamed torch path (memory ``O(block_rows * d)`` beside ``O(n)``).

    ``gains[t]`` is the covering radius just before pick ``t`` (``inf`` for a random first pick) and is
    non-increasing; ``objective`` is the final covering radius. Weights are ones; labels are not used.
    The picks equal the textbook greedy exactly (ties go to the smaller row) on any number of threads;
    extra memory is 8 bytes per row (12 with ``metric="cosine"``).
    """

    def __init__(self, *, seed: int = 0, metric: Literal["euclidean", "cosine"] = "euclidean", initial: Any = None,
                 backend: Literal["auto", "rust", "torch"] = "auto", block_rows: int | None = None) -> None:
        if metric not in _METRICS:
            raise InvalidInputError(f"unknown metric {metric!r}; expected one of {_METRICS}")
        check_backend(backend, block_rows)
        super().__init__(seed=seed, metric=metric, initial=initial, backend=backend, block_rows=block_rows)
        self.metric = metric
        self.initial = initial

    def _initial(self, n: int) -> np.ndarray | None:
        if self.initial is None:
            return None
        initial = row_indices(self.initial, n, name="initial")
        if initial.size == 0:
            raise InvalidInputError("initial is empty; pass None to start from a seeded random row, or at least one row index")
        return initial

    def _metadata(self, initial: np.ndarray | None) -> dict[str, Any]:
        meta: dict[str, Any] = {"metric": self.metric}
        if initial is not None:
            meta["initial"] = initial.tolist()
        return meta

    def _select(self, x: np.ndarray, k: int, *, labels: np.ndarray | None) -> Selection:
        initial = self._initial(x.shape[0])
        result = _core.kcenter(x, k, metric=self.metric, initial=initial, seed=rust_seed(self.seed))
        return to_selection(result, metadata=self._metadata(initial))

    def _select_torch(self, rows: Any, k: int, *, labels: np.ndarray | None) -> Selection:
        from . import _torch

        initial = self._initial(rows.n)
        result = _torch.kcenter(rows, k, metric=self.metric, initial=initial, seed=rust_seed(self.seed))
        return to_selection(result, metadata={**self._metadata(initial), "backend": "torch"})
