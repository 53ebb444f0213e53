"""Plumbing shared by the Rust-backed geometric selectors (k-center, herding, k-means)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ErasusTypeError, InvalidInputError
from ..selection import Selection

__all__ = ["TorchTwin", "rust_seed", "row_indices", "to_selection"]


def rust_seed(seed: int) -> int:
    """The selector's seed as the unsigned 64-bit integer the Rust core takes."""
    if not 0 <= seed < 2**64:
        raise InvalidInputError(f"seed must be an integer in [0, 2**64), got {seed}")
    return seed


def row_indices(rows: Any, n: int, *, name: str) -> np.ndarray:
    """``rows`` (sequence, numpy array or torch tensor of row indices) as a 1-D int64 array in ``[0, n)``."""
    if hasattr(rows, "detach"):
        rows = rows.detach().cpu().numpy()
    arr = np.asarray(rows)
    if arr.ndim != 1:
        raise InvalidInputError(f"{name} must be a 1-D sequence of row indices, got shape {arr.shape}")
    if arr.size and arr.dtype.kind not in "iu":
        raise ErasusTypeError(f"{name} must hold integer row indices, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    bad = (arr < 0) | (arr >= n)
    if bad.any():
        raise InvalidInputError(f"{name} index {int(arr[bad][0])} is out of range for n = {n} samples; expected 0 <= index < {n}")
    return arr


def to_selection(result: tuple[np.ndarray, np.ndarray, np.ndarray, float], *, metadata: dict[str, Any]) -> Selection:
    """A :class:`Selection` from the ``(indices, weights, gains, objective)`` tuple of an ``erasus._core`` call."""
    indices, weights, gains, objective = result
    return Selection(indices, weights, gains if gains.size else None, objective, metadata=metadata)


class TorchTwin:
    """Mixin of the selectors with a torch twin (:mod:`erasus.selectors._torch`): the ``backend`` and
    ``block_rows`` options and the dispatch that :meth:`Selector.select` asks for."""

    options: dict[str, Any]

    def _torch_path(self, features: Any) -> bool:
        from ._torch import use_torch

        return use_torch(features, backend=self.options["backend"], block_rows=self.options["block_rows"])
