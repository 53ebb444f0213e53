"""The :class:`Selection` every selector returns, and the array conversion all selectors share."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from .errors import ErasusTypeError, InvalidInputError, NonFiniteError
from .registry import get_selector

__all__ = ["Selection", "as_features", "check_shape", "check_values", "resolve_k", "select"]

_F32_MAX = float(np.finfo(np.float32).max)
# rows per chunk of the numpy check: min/max reductions need no temporaries, this only bounds page-ins per step
_CHUNK_ROWS = 65_536


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


def _is_tensor(x: Any) -> bool:
    return hasattr(x, "detach") and hasattr(x, "cpu") and hasattr(x, "numpy")  # torch.Tensor, no torch import


def magnitude_limit(d: int) -> float:
    """The largest ``|x|`` for which squared distances / dot products over ``d`` features stay finite in float32.

    ``||a - b||^2 <= d (2 max|x|)^2`` must stay below float32's max (3.4e38), so ``max|x| < sqrt(3.4e38 / 4d)``.
    """
    return float(np.sqrt(_F32_MAX / (4.0 * max(int(d), 1))))


def check_values(x: Any, *, name: str = "features", limit: float | None = None, allow_nan: bool = False) -> None:
    """Refuse NaN / infinity (naming the first bad cell) and magnitudes that would overflow float32 arithmetic.

    ``x`` is a numpy array (memory-mapped included, read in row chunks) or a torch tensor, checked on its own
    device (``amin``/``amax`` reductions; only two scalars reach the host). ``limit`` defaults to
    :func:`magnitude_limit` of the column count: above it the selectors' squared distances overflow to inf and
    their picks become index order. Complex input is refused rather than silently losing its imaginary part.
    ``allow_nan``: NaN is a value the caller gives meaning to (an unscored position); infinity is still refused.
    """
    if _is_tensor(x):
        t = x.detach()
        if t.is_complex():
            raise ErasusTypeError(f"{name} must be real, got a complex tensor ({t.dtype}); pass .real or .abs()")
        if t.numel() == 0 or str(t.dtype) == "torch.bool":
            return
        if allow_nan and t.is_floating_point():
            t = t.nan_to_num(nan=0.0, posinf=float("inf"), neginf=float("-inf"))
        lo, hi = float(t.amin()), float(t.amax())
        shape = tuple(t.shape)
    else:
        a = np.asarray(x)
        if a.dtype.kind == "c":
            raise ErasusTypeError(f"{name} must be real, got complex dtype {a.dtype}; pass .real or np.abs()")
        if a.size == 0 or a.dtype.kind not in "fiu":
            return
        flat = a.reshape(a.shape[0], -1) if a.ndim > 1 else a.reshape(-1, 1)
        lo, hi = np.inf, -np.inf
        for start in range(0, flat.shape[0], _CHUNK_ROWS):
            chunk = flat[start:start + _CHUNK_ROWS]
            if allow_nan and a.dtype.kind == "f":  # fmin/fmax skip NaN; an all-NaN chunk gives NaN, read as 0
                c_lo, c_hi = float(np.fmin.reduce(chunk, axis=None)), float(np.fmax.reduce(chunk, axis=None))
                c_lo, c_hi = (0.0, 0.0) if np.isnan(c_lo) else (c_lo, c_hi)
            else:
                c_lo, c_hi = float(chunk.min()), float(chunk.max())
            lo, hi = min(lo, c_lo), max(hi, c_hi)
            if np.isnan(lo) or np.isnan(hi):
                break
        shape = a.shape
    if not (np.isfinite(lo) and np.isfinite(hi)):
        where, value = _first_non_finite(x, allow_nan=allow_nan)
        shown = "NaN" if np.isnan(value) else ("+inf" if value > 0 else "-inf")
        raise NonFiniteError(f"{name} contain a non-finite value ({shown}) at {where}; clean or impute them first")
    d = shape[1] if len(shape) > 1 else 1
    bound = magnitude_limit(int(np.prod(shape[1:])) if len(shape) > 1 else d) if limit is None else limit
    big = max(abs(lo), abs(hi))
    if big > bound:
        raise InvalidInputError(
            f"{name} reach |x| = {big:.3g}; with {d} columns, squared distances overflow float32 above "
            f"|x| = {bound:.3g} and the selection would be meaningless: rescale them (e.g. standardize) first"
        )


def _first_non_finite(x: Any, *, allow_nan: bool = False) -> tuple[str, float]:
    """Where the first NaN/inf is (row-major), for the error message; runs only once a check has failed."""
    if _is_tensor(x):
        import torch

        t = x.detach()
        pos = torch.nonzero(torch.isinf(t) if allow_nan else ~torch.isfinite(t))[0].tolist()
        value = float(t[tuple(pos)])
    else:
        a = np.asarray(x)
        flat = a.reshape(a.shape[0], -1) if a.ndim > 1 else a.reshape(-1, 1)
        pos = []
        for start in range(0, flat.shape[0], _CHUNK_ROWS):
            part = flat[start:start + _CHUNK_ROWS]
            bad = np.argwhere(np.isinf(part) if allow_nan else ~np.isfinite(part))
            if bad.size:
                pos = [start + int(bad[0][0]), int(bad[0][1])]
                break
        value = float(flat[pos[0], pos[1]])
        pos = pos if a.ndim > 1 else pos[:1]
    where = f"row {pos[0]}, column {pos[1]}" if len(pos) == 2 else (f"index {pos[0]}" if len(pos) == 1
                                                                    else f"position {tuple(pos)}")
    return where, value


def as_features(x: Any, *, name: str = "features", allow_nan: bool = False) -> np.ndarray:
    """Return ``x`` as a C-contiguous float32 ``(n, d)`` numpy array, after :func:`check_values`.

    float32 C-contiguous numpy input (including ``np.memmap``) is returned as-is (zero-copy); torch
    tensors are checked on their device, then moved to the CPU and viewed through numpy; anything else is
    converted once. Every selector's features pass through here, so NaN, infinity, complex values and
    magnitudes that overflow float32 distances are refused the same way for all of them.
    """
    checked = False
    if _is_tensor(x):
        t = x.detach()
        if t.is_complex():
            raise ErasusTypeError(f"{name} must be real floating point, got a complex tensor ({t.dtype})")
        if t.ndim == 2 and t.numel():
            check_values(t, name=name, allow_nan=allow_nan)
            checked = True
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
    if x.dtype.kind == "c":
        raise ErasusTypeError(f"{name} must be real floating point, got complex dtype {x.dtype}")
    if x.dtype.kind not in "fiub":
        raise ErasusTypeError(f"{name} must be numeric, got dtype {x.dtype}")
    check_shape(tuple(x.shape), name=name)
    if not checked and x.dtype.kind != "b":
        check_values(x, name=name, allow_nan=allow_nan)  # before the cast: a float64 1e300 would become a float32 inf
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
