"""The :class:`Selection` every selector returns, and the array conversion all selectors share."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from .errors import ErasusTypeError, InvalidInputError
from .registry import get_selector

__all__ = ["Selection", "as_features", "check_shape", "resolve_k", "select"]


@dataclasses.dataclass(frozen=True)
class Selection:
    """A chosen coreset.

    Attributes:
        indices: int64 row indices into the features, in the order the selector picked them.
        weights: float32, one per index. For facility location / CRAIG / k-means the number of points
            each element represents (they sum to n); ones otherwise.
        gains: float64 marginal gain of each greedy step where defined, else ``None``.
        objective: the selector's objective for the final set (covering radius, f(S) ...), or ``None``.
        method: registry name of the selector that produced it.
        metadata: anything else the selector reports (e.g. the auto-selector's choice and reason).
    """

    indices: np.ndarray
    weights: np.ndarray
    gains: np.ndarray | None = None
    objective: float | None = None
    method: str = ""
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        idx = np.ascontiguousarray(np.asarray(self.indices, dtype=np.int64))
        w = np.ascontiguousarray(np.asarray(self.weights, dtype=np.float32))
        if idx.ndim != 1 or w.shape != idx.shape:
            raise InvalidInputError(f"Selection needs 1-D indices and weights of equal length, got {idx.shape} and {w.shape}")
        object.__setattr__(self, "indices", idx)
        object.__setattr__(self, "weights", w)
        if self.gains is not None:
            object.__setattr__(self, "gains", np.asarray(self.gains, dtype=np.float64))
        if self.objective is not None:
            object.__setattr__(self, "objective", float(self.objective))

    def __len__(self) -> int:
        return int(self.indices.shape[0])

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "indices": self.indices.tolist(),
            "weights": self.weights.tolist(),
            "gains": None if self.gains is None else self.gains.tolist(),
            "objective": self.objective,
            "metadata": self.metadata,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Selection":
        return cls(
            indices=np.asarray(data["indices"], dtype=np.int64),
            weights=np.asarray(data["weights"], dtype=np.float32),
            gains=None if data.get("gains") is None else np.asarray(data["gains"], dtype=np.float64),
            objective=data.get("objective"),
            method=data.get("method", ""),
            metadata=dict(data.get("metadata") or {}),
        )


def as_features(x: Any, *, name: str = "features") -> np.ndarray:
    """Return ``x`` as a C-contiguous float32 ``(n, d)`` numpy array.

    float32 C-contiguous numpy input (including ``np.memmap``) is returned as-is (zero-copy); torch
    tensors are moved to the CPU and viewed through numpy; anything else is converted once. NaN/inf
    checks happen in the Rust core, in parallel, without another copy.
    """
    if hasattr(x, "detach") and hasattr(x, "cpu") and hasattr(x, "numpy"):  # torch.Tensor, no torch import
        t = x.detach()
        if t.is_complex():
            raise ErasusTypeError(f"{name} must be real floating point, got a complex tensor ({t.dtype})")
        t = t.cpu()
        if not t.is_floating_point():
            t = t.float()
        if str(t.dtype) in ("torch.bfloat16", "torch.float16", "torch.float64"):
            t = t.float()
        x = t.numpy()
    if not isinstance(x, np.ndarray):
        try:
            x = np.asarray(x)
        except Exception as exc:
            raise ErasusTypeError(f"{name} must be array-like (numpy array or torch tensor), got {type(x).__name__}") from exc
    if x.dtype.kind not in "fiub":
        raise ErasusTypeError(f"{name} must be numeric, got dtype {x.dtype}")
    check_shape(tuple(x.shape), name=name)
    if x.dtype == np.float32 and x.flags.c_contiguous:
        return x
    return np.ascontiguousarray(x, dtype=np.float32)


def check_shape(shape: tuple[int, ...], *, name: str = "features") -> None:
    """The shape check every feature path shares (numpy, memmap, torch on any device): 2-D and non-empty."""
    if len(shape) != 2:
        raise InvalidInputError(f"{name} must be 2-D (n_samples, n_features), got shape {shape}")
    if shape[0] == 0 or shape[1] == 0:
        raise InvalidInputError(f"{name} are empty: shape {shape}; expected at least one row and one column")


def resolve_k(n: int, k: int | None = None, *, ratio: float | None = None) -> int:
    """Coreset size from an explicit ``k`` or a fraction ``ratio`` of ``n`` (at least 1)."""
    if (k is None) == (ratio is None):
        raise InvalidInputError("give exactly one of k (coreset size) or ratio (fraction of n)")
    if ratio is not None:
        if not (0.0 < float(ratio) <= 1.0):
            raise InvalidInputError(f"ratio must be in (0, 1], got {ratio}")
        return max(1, int(round(float(ratio) * n)))
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise ErasusTypeError(f"k must be an integer, got {type(k).__name__}")
    k = int(k)
    if k <= 0:
        raise InvalidInputError(f"k must be >= 1, got {k}")
    if k > n:
        raise InvalidInputError(f"k = {k} exceeds the number of samples n = {n}; expected 1 <= k <= n")
    return k


def select(x: Any, k: int | None = None, method: str = "kcenter", *, seed: int = 0, ratio: float | None = None,
           labels: Any = None, **options: Any) -> Selection:
    """Select a coreset of ``k`` rows of ``x`` (numpy array or torch tensor, shape (n, d)) with ``method``.

    ``options`` go to the selector's constructor (e.g. ``metric="cosine"`` for k-center,
    ``neighbors=50`` for sparse facility location). Deterministic for a given ``seed``.

    k-center, herding, k-means and facility location / CRAIG select a CUDA tensor on its device (torch ops, no
    copy to the host) and stream an ``np.memmap`` in row blocks (``block_rows=``, automatic above half the RAM);
    ``backend="rust"`` / ``"torch"`` forces either path. Other selectors take their features on the host.
    """
    return get_selector(method, seed=seed, **options).select(k, features=x, ratio=ratio, labels=labels)
