"""Greedy submodular maximization (Nemhauser, Wolsey & Fisher 1978) over the functions of Iyer & Bilmes
and Kaushal et al. 2021 ("PRISM" / submodlib), run in the Rust core."""

from __future__ import annotations

from typing import Any, Literal, Sequence

import numpy as np

from .. import _core
from ..errors import InvalidInputError
from ..registry import register_selector
from ..selection import Selection
from ._geometry import rust_seed
from .base import Selector
from .facility_location import DEFAULT_MAX_DENSE_BYTES, SIMILARITIES, _check_choice, check_common, per_class

__all__ = ["SubmodularSelector", "FUNCTIONS"]

FUNCTIONS = (
    "facility_location",
    "graph_cut",
    "saturated_coverage",
    "feature_based",
    "log_determinant",
    "sum_redundancy",
    "disparity_sum",
    "mixture",
)
CONCAVE = ("sqrt", "log")


@register_selector("submodular")
class SubmodularSelector(Selector):
    """Greedy maximization of ``function`` under ``|S| = k`` (ties to the smaller row).

    Functions, on the similarity kernel ``s`` (``similarity=``; dense ``n x n``, refused above
    ``max_dense_bytes``) or, for ``feature_based``, on non-negative features ``x``:

    - ``facility_location``: ``f(S) = sum_i max(0, max_{j in S} s_ij)`` (weights = cluster sizes; the only
      function with ``neighbors=`` sparse kNN mode and ``partitions=`` GreeDi).
    - ``graph_cut`` (``lambda_``): ``sum_{i in V, j in S} s_ij - lambda sum_{i, j in S} s_ij``; monotone for lambda <= 1/2.
    - ``saturated_coverage`` (``alpha``; Lin & Bilmes 2011): ``sum_i min(sum_{j in S} s_ij, alpha sum_{j in V} s_ij)``.
    - ``feature_based`` (``concave`` sqrt | log; Wei, Iyer & Bilmes 2014): ``sum_u phi(sum_{j in S} x_ju)``.
    - ``log_determinant`` (``reg``; DPP MAP, Chen et al. 2018 incremental Cholesky): ``log det(s_SS + reg I)``.
    - ``sum_redundancy`` (apricot, Schreiber et al. 2020): ``c |S| - sum_{i<j in S} s_ij``, ``c = (n-1) max s``.
    - ``disparity_sum`` (Dasgupta et al. 2013): ``sum_{i<j in S} d_ij``, ``d = 1 - s`` (``D`` for craig);
      supermodular, so ``optimizer="lazy"`` is refused.
    - ``mixture``: ``sum_t w_t f_t`` over ``mixture=[(name, weight), ...]`` (weights >= 0).

    Non-monotone functions may have negative gains; the greedy still takes the argmax so that exactly
    ``k`` rows come back. ``lazy`` (Minoux) picks exactly what ``naive`` picks; it is refused where the
    function is not submodular (disparity_sum, or negative similarities in graph_cut / saturated_coverage
    / sum_redundancy). Weights are ones except for facility location alone.
    """

    def __init__(
        self,
        *,
        seed: int = 0,
        function: str = "facility_location",
        mixture: Sequence[tuple[str, float]] | None = None,
        similarity: Literal["craig", "cosine", "rbf"] = "rbf",
        gamma: float | None = None,
        lambda_: float = 0.5,
        alpha: float = 0.1,
        concave: Literal["sqrt", "log"] = "sqrt",
        reg: float = 1.0,
        optimizer: Literal["naive", "lazy", "stochastic"] = "lazy",
        epsilon: float = 0.01,
        max_dense_bytes: int = DEFAULT_MAX_DENSE_BYTES,
        neighbors: int | None = None,
        partitions: int = 1,
        shuffle_partitions: bool = False,
        per_class: bool = False,
    ) -> None:
        _check_choice("function", function, FUNCTIONS)
        _check_choice("similarity", similarity, SIMILARITIES)
        _check_choice("concave", concave, CONCAVE)
        check_common(optimizer=optimizer, epsilon=epsilon, max_dense_bytes=max_dense_bytes, neighbors=neighbors,
                     partitions=partitions, gamma=gamma)
        parts: list[tuple[str, float]] | None = None
        if function == "mixture":
            if not mixture:
                raise InvalidInputError("function='mixture' needs mixture=[(function_name, weight), ...]")
            parts = []
            for item in mixture:
                if not (isinstance(item, (tuple, list)) and len(item) == 2):
                    raise InvalidInputError(f"mixture items must be (function_name, weight) pairs, got {item!r}")
                name, w = item
                _check_choice("mixture function", name, FUNCTIONS[:-1])
                if not isinstance(w, (int, float)) or not np.isfinite(w) or w < 0:
                    raise InvalidInputError(f"mixture weight of {name!r} must be a finite number >= 0, got {w!r}")
                parts.append((name, float(w)))
        elif mixture is not None:
            raise InvalidInputError(f"mixture= is only used with function='mixture', got function={function!r}")
        for name, value, ok in (("lambda_", lambda_, lambda v: v >= 0), ("alpha", alpha, lambda v: 0 < v <= 1),
                                ("reg", reg, lambda v: v > 0)):
            if not isinstance(value, (int, float)) or not np.isfinite(value) or not ok(value):
                expected = {"lambda_": ">= 0", "alpha": "in (0, 1]", "reg": "> 0"}[name]
                raise InvalidInputError(f"{name} must be a finite number {expected}, got {value!r}")
        super().__init__(seed=seed, function=function, mixture=parts, similarity=similarity, gamma=gamma,
                         lambda_=float(lambda_), alpha=float(alpha), concave=concave, reg=float(reg),
                         optimizer=optimizer, epsilon=float(epsilon), max_dense_bytes=int(max_dense_bytes),
                         neighbors=neighbors, partitions=int(partitions), shuffle_partitions=bool(shuffle_partitions),
                         per_class=bool(per_class))

    def _run(self, x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        o = dict(self.options)
        n = x.shape[0]
        o.pop("per_class")
        o["neighbors"] = None if o["neighbors"] is None else min(o["neighbors"], n)
        o["partitions"] = min(o["partitions"], n)
        return _core.submodular(x, k, seed=rust_seed(self.seed), **o)

    def _select(self, x: np.ndarray, k: int, *, labels: np.ndarray | None) -> Selection:
        if labels is not None and self.options["per_class"]:
            idx, w, g, obj = per_class(x, k, labels, self._run)
        else:
            idx, w, g, obj = self._run(x, k)
        return Selection(idx, w, g, obj, metadata=dict(self.options))
