"""k-means coreset: k-means++ seeding (Arthur & Vassilvitskii, SODA 2007) + Lloyd iterations, in Rust."""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np

from .. import _core
from ..errors import ErasusTypeError, InvalidInputError
from ..registry import register_selector
from ..selection import Selection
from ._geometry import TorchTwin, rust_seed, to_selection
from ._torch import check_backend
from .base import Selector

__all__ = ["KMeansSelector"]


@register_selector("kmeans")
class KMeansSelector(TorchTwin, Selector):
    """k-means on the features, minimizing the inertia ``sum_i min_j ||x_i - c_j||^2``; returns for each
    centroid the nearest row not already taken.

    Seeding draws each next seed with probability ``D(x)^2 / sum D^2`` (k-means++); Lloyd then alternates
    assignment and mean updates until the relative inertia decrease is ``<= tol`` or ``max_iter`` updates.
    ``weights[j]`` is the size of cluster ``j`` (they sum to n), ``objective`` the final inertia; no
    gains. Deterministic for a given ``seed`` on any number of threads; labels are not used.

    Args:
        backend: ``"auto"`` (default: the Rust core, except that a CUDA tensor is selected on its device with torch
            ops, and ``block_rows`` or an ``np.memmap`` larger than half the RAM streams row blocks through torch),
            ``"rust"`` or ``"torch"`` (the torch twin on the tensor's device; the same picks up to float ties).
        block_rows: rows per block of the streamed torch path (memory ``O(block_rows * d)`` beside ``O(n)``).
    """

    def __init__(self, *, seed: int = 0, max_iter: int = 100, tol: float = 1e-4,
                 backend: Literal["auto", "rust", "torch"] = "auto", block_rows: int | None = None) -> None:
        if isinstance(max_iter, bool) or not isinstance(max_iter, (int, np.integer)):
            raise ErasusTypeError(f"max_iter must be an integer, got {type(max_iter).__name__}")
        if max_iter < 0:
            raise InvalidInputError(f"max_iter must be >= 0, got {max_iter}")
        if not (isinstance(tol, (int, float, np.floating)) and math.isfinite(tol) and tol >= 0):
            raise InvalidInputError(f"tol must be a finite number >= 0, got {tol!r}")
        check_backend(backend, block_rows)
        super().__init__(seed=seed, max_iter=int(max_iter), tol=float(tol), backend=backend, block_rows=block_rows)
        self.max_iter = int(max_iter)
        self.tol = float(tol)

    def _select(self, x: np.ndarray, k: int, *, labels: np.ndarray | None) -> Selection:
        result = _core.kmeans(x, k, seed=rust_seed(self.seed), max_iter=self.max_iter, tol=self.tol)
        return to_selection(result, metadata={"max_iter": self.max_iter, "tol": self.tol})

    def _select_torch(self, rows: Any, k: int, *, labels: np.ndarray | None) -> Selection:
        from . import _torch

        result = _torch.kmeans(rows, k, seed=rust_seed(self.seed), max_iter=self.max_iter, tol=self.tol)
        return to_selection(result, metadata={"max_iter": self.max_iter, "tol": self.tol, "backend": "torch"})
