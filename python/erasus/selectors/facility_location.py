"""Facility location and CRAIG (Mirzasoleiman, Bilmes & Leskovec, "Coresets for Data-efficient
Training of Machine Learning Models", ICML 2020), run in the Rust core.

``f(S) = sum_i max(0, max_{j in S} s_ij)`` is maximized greedily; each selected element's weight is
the number of points whose most similar selected element it is (the weights sum to n).
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar, Literal

import numpy as np

from .. import _core
from ..errors import ErasusTypeError, InvalidInputError
from ..registry import register_selector
from ..selection import Selection
from ._geometry import rust_seed
from .base import FeatureKind, Selector

__all__ = ["FacilityLocationSelector", "CraigSelector", "per_class", "split_k"]

SIMILARITIES = ("craig", "cosine", "rbf")
OPTIMIZERS = ("naive", "lazy", "stochastic")
#: default dense budget (4 GiB); above it the dense mode is refused with the bytes it would need
DEFAULT_MAX_DENSE_BYTES = 4 << 30

CoreResult = tuple[np.ndarray, np.ndarray, np.ndarray, float]


def _check_choice(name: str, value: Any, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise InvalidInputError(f"unknown {name} {value!r}; expected one of {allowed}")
    return value


def _check_int(name: str, value: Any, *, low: int, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ErasusTypeError(f"{name} must be an integer, got {type(value).__name__}")
    if int(value) < low:
        raise InvalidInputError(f"{name} must be >= {low}, got {value}")
    return int(value)


def check_common(*, optimizer: Any, epsilon: Any, max_dense_bytes: Any, neighbors: Any, partitions: Any,
                 gamma: Any) -> None:
    """Validates the options the facility-location and submodular selectors share."""
    _check_choice("optimizer", optimizer, OPTIMIZERS)
    if not isinstance(epsilon, (int, float)) or not 0.0 < float(epsilon) < 1.0:
        raise InvalidInputError(f"epsilon must be in (0, 1) (stochastic greedy's accuracy), got {epsilon!r}")
    _check_int("max_dense_bytes", max_dense_bytes, low=0)
    _check_int("neighbors", neighbors, low=1, allow_none=True)
    _check_int("partitions", partitions, low=1)
    if gamma is not None and (not isinstance(gamma, (int, float)) or not np.isfinite(gamma) or gamma <= 0):
        raise InvalidInputError(f"gamma must be a positive number (rbf similarity exp(-gamma * D^2)), got {gamma!r}")


def split_k(counts: np.ndarray, k: int) -> np.ndarray:
    """Per-class budgets proportional to ``counts`` (largest remainder, ties to the earlier class), each >= 1."""
    counts = np.asarray(counts, dtype=np.int64)
    if k < counts.size:
        raise InvalidInputError(f"per-class selection needs k >= the number of classes ({counts.size}), got k = {k}")
    quota = k * counts / counts.sum()
    alloc = np.floor(quota).astype(np.int64)
    order = np.lexsort((np.arange(counts.size), -(quota - alloc)))
    alloc[order[: k - int(alloc.sum())]] += 1
    for c in np.flatnonzero(alloc == 0):
        donor = int(np.argmax(alloc))  # first class with the largest budget gives one up
        alloc[donor] -= 1
        alloc[c] = 1
    return alloc


def per_class(x: np.ndarray, k: int, labels: np.ndarray, run: Callable[[np.ndarray, int], CoreResult]) -> CoreResult:
    """Runs ``run`` on each class's rows with a budget proportional to the class size and maps the picks back
    to global row ids; indices are class by class (sorted labels), the objective is the sum over classes."""
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    budgets = split_k(counts, k)
    parts = []
    for c, kc in enumerate(budgets):
        rows = np.flatnonzero(inverse == c)
        idx, w, g, obj = run(np.ascontiguousarray(x[rows]), int(kc))
        parts.append((rows[idx], w, g, obj))
    return (
        np.concatenate([p[0] for p in parts]).astype(np.int64),
        np.concatenate([p[1] for p in parts]).astype(np.float32),
        np.concatenate([p[2] for p in parts]).astype(np.float64),
        float(sum(p[3] for p in parts)),
    )


@register_selector("facility_location")
class FacilityLocationSelector(Selector):
    """Facility location ``f(S) = sum_i max(0, max_{j in S} s_ij)`` (Mirzasoleiman et al. 2020).

    Args:
        similarity: ``"craig"`` (``s = D_max - D``, D Euclidean; maximizing f minimizes CRAIG's
            ``sum_i min_{j in S} D_ij``), ``"cosine"``, or ``"rbf"`` (``exp(-gamma D^2)``, gamma default 1/d).
        neighbors: ``None`` for the dense ``n x n`` kernel, or K for the sparse exact kNN graph (self
            included; only a point's K nearest neighbours can cover it; for craig ``D_max`` is the largest
            kNN distance). Memory ``O(nK)``; the graph is built by blocked GEMM with a fused top-K.
        optimizer: ``"lazy"`` (Minoux; selects exactly what ``"naive"`` selects), ``"naive"``, or
            ``"stochastic"`` (Mirzasoleiman et al. 2015, ``(n/k) ln(1/epsilon)`` samples per step).
        max_dense_bytes: the dense mode refuses (``MemoryBudgetError`` with the bytes needed) when
            ``4 n^2`` exceeds it.
        partitions: GreeDi shards (Mirzasoleiman et al. 2013); > 1 runs the two-round distributed greedy
            and scores candidates on the all-pairs objective.
        per_class: with ``labels=``, select within each class with ``k`` split proportionally.
    """

    per_class_default: ClassVar[bool] = False

    def __init__(
        self,
        *,
        seed: int = 0,
        similarity: Literal["craig", "cosine", "rbf"] = "craig",
        gamma: float | None = None,
        neighbors: int | None = None,
        optimizer: Literal["naive", "lazy", "stochastic"] = "lazy",
        epsilon: float = 0.01,
        max_dense_bytes: int = DEFAULT_MAX_DENSE_BYTES,
        partitions: int = 1,
        shuffle_partitions: bool = False,
        per_class: bool | None = None,
    ) -> None:
        _check_choice("similarity", similarity, SIMILARITIES)
        check_common(optimizer=optimizer, epsilon=epsilon, max_dense_bytes=max_dense_bytes, neighbors=neighbors,
                     partitions=partitions, gamma=gamma)
        per_class = self.per_class_default if per_class is None else bool(per_class)
        super().__init__(seed=seed, similarity=similarity, gamma=gamma, neighbors=neighbors, optimizer=optimizer,
                         epsilon=epsilon, max_dense_bytes=max_dense_bytes, partitions=partitions,
                         shuffle_partitions=shuffle_partitions, per_class=per_class)

    def _run(self, x: np.ndarray, k: int) -> CoreResult:
        o = self.options
        n = x.shape[0]
        return _core.facility_location(
            x, k, similarity=o["similarity"], gamma=o["gamma"],
            neighbors=None if o["neighbors"] is None else min(o["neighbors"], n),
            optimizer=o["optimizer"], epsilon=float(o["epsilon"]), seed=rust_seed(self.seed),
            max_dense_bytes=int(o["max_dense_bytes"]), partitions=min(o["partitions"], n),
            shuffle_partitions=bool(o["shuffle_partitions"]),
        )

    def _select(self, x: np.ndarray, k: int, *, labels: np.ndarray | None) -> Selection:
        meta = dict(self.options)
        if labels is not None and self.options["per_class"]:
            idx, w, g, obj = per_class(x, k, labels, self._run)
        else:
            idx, w, g, obj = self._run(x, k)
        return Selection(idx, w, g, obj, metadata=meta)


@register_selector("craig")
class CraigSelector(FacilityLocationSelector):
    """CRAIG (Mirzasoleiman et al. 2020): facility location on per-sample gradient features with weights
    = cluster sizes, selected per class when ``labels=`` are given (the paper's per-class greedy).

    Without ``features=``, ``select(model=..., data=...)`` computes per-sample gradients. Options as in
    :class:`FacilityLocationSelector`.
    """

    default_features: ClassVar[FeatureKind] = "gradients"
    per_class_default: ClassVar[bool] = True
