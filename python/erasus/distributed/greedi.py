"""The per-partition work of the two-round distributed selection, independent of the engine that runs it.

GreeDi (Mirzasoleiman, Karbasi, Sarkar & Krause, "Distributed Submodular Maximization: Identifying
Representative Elements in Massive Data", NeurIPS 2013): round 1 runs the greedy for ``k`` on each of the
``m`` partitions ``V_1 .. V_m``; round 2 runs it on the union of the ``m`` local solutions; the answer is the
best, on the full objective ``f`` over all ``n`` rows, of the merged solution and the local ones. For monotone
submodular ``f`` this is a ``(1 - 1/e)^2 / min(m, k)`` approximation in the worst case and close to the
centralized greedy on data with geometric structure (the paper's Theorem 4.2 and experiments).

Composable k-center coresets (Malkomes, Kusner, Chen, Weinberger & Moseley, "Fast Distributed k-Center
Clustering with Outliers on Massive Data", NeurIPS 2015): Gonzalez' greedy (a 2-approximation) on every
partition, then again on the union of the ``m k`` local centers; the result is a 4-approximation of
``min_S max_i min_{j in S} d(x_i, x_j)``. As for GreeDi the better (smaller radius over all rows) of the
merged and the local solutions is returned, which can only lower the radius.

GreeDi for the other submodular functions of the Rust core (``method="submodular"``, ``function=``): each
partition's greedy maximizes the function restricted to its rows (GreeDi's local objective for decomposable
functions, the paper's Section 4.5), the union greedy the function on the union, and the candidates are scored
on the function over all ``n`` rows: ``graph_cut`` and ``saturated_coverage`` are sums over rows (each
partition adds its share; saturated coverage's caps ``alpha sum_{j in V} s_ij`` need every row's similarity
to all rows, one more pass over partition pairs), ``sum_redundancy``, ``feature_based`` and
``log_determinant`` depend on the selected rows (and ``n``) only.

The functions here run inside a Ray task or on a torch.distributed rank; they only see their own rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InvalidInputError
from ..registry import get_selector

__all__ = ["METHODS", "SUBMODULAR", "evaluate_candidates", "local_greedy", "pick_best", "row_totals",
           "set_terms", "union_greedy"]

#: methods with a two-round distributed algorithm and an objective that is a sum (or max) over rows
METHODS = ("facility_location", "craig", "kcenter", "submodular")
#: functions of ``method="submodular"`` with a distributed evaluation of the full objective
SUBMODULAR = ("facility_location", "graph_cut", "saturated_coverage", "sum_redundancy", "feature_based",
              "log_determinant")
#: of those, the ones whose value has a per-row part that needs a pass over all partitions
ROW_SUMS = ("facility_location", "graph_cut", "saturated_coverage")
_ROW_BLOCK = 16384


def check_submodular(options: dict[str, Any]) -> str:
    """The function of ``method="submodular"``, refusing those without a distributed evaluation here."""
    fn = options.get("function", "facility_location")
    if fn not in SUBMODULAR:
        why = {"disparity_sum": "it is supermodular, GreeDi's guarantee needs a submodular function",
               "mixture": "mix the functions' selections instead"}.get(fn, "")
        raise InvalidInputError(f"select_distributed(method='submodular') supports function in {SUBMODULAR}, "
                                f"got {fn!r}" + (f" ({why})" if why else ""))
    if options.get("similarity", "rbf") == "craig":
        raise InvalidInputError("similarity='craig' needs D_max, the largest distance over all n^2 pairs, which no "
                                "partition sees; use similarity='rbf' or 'cosine' (or method='craig')")
    return str(fn)


def _kernel(xb: np.ndarray, c: np.ndarray, options: dict[str, Any]) -> np.ndarray:
    """float64 similarities ``s(x_i, c_j)`` as the Rust kernel defines them: ``exp(-gamma ||x_i - c_j||^2)``
    (gamma default ``1/d``) or the cosine (0 for zero rows)."""
    xb = np.asarray(xb, dtype=np.float64)
    c = np.asarray(c, dtype=np.float64)
    if options.get("similarity", "rbf") == "cosine":
        def unit(a: np.ndarray) -> np.ndarray:
            norm = np.linalg.norm(a, axis=1, keepdims=True)
            return np.divide(a, norm, out=np.zeros_like(a), where=norm > 0)
        return unit(xb) @ unit(c).T
    gamma = options.get("gamma") or 1.0 / xb.shape[1]
    d2 = np.einsum("ij,ij->i", xb, xb)[:, None] - 2.0 * (xb @ c.T) + np.einsum("ij,ij->i", c, c)[None, :]
    return np.exp(-gamma * np.maximum(d2, 0.0))


def row_totals(x: np.ndarray, other: np.ndarray, options: dict[str, Any]) -> np.ndarray:
    """``sum_{j in other} s(x_i, x_j)`` for every row of ``x`` (summed over all partitions ``other``, these
    are saturated coverage's ``sum_{j in V} s_ij``)."""
    out = np.zeros(x.shape[0], dtype=np.float64)
    for r0 in range(0, x.shape[0], _ROW_BLOCK):
        for c0 in range(0, other.shape[0], _ROW_BLOCK):
            out[r0:r0 + _ROW_BLOCK] += _kernel(x[r0:r0 + _ROW_BLOCK], other[c0:c0 + _ROW_BLOCK], options).sum(axis=1)
    return out


def set_terms(candidates: list[np.ndarray], n: int, options: dict[str, Any]) -> np.ndarray:
    """The part of each candidate's value that depends on its own rows only (added once, by the driver):
    graph cut ``-lambda sum_{i,j in S} s_ij``; sum-redundancy ``(n-1) s_max |S| - sum_{i<j in S} s_ij`` with
    ``s_max = 1`` (a row's self-similarity under rbf and cosine; wrong only when every row is zero under
    cosine); feature based ``sum_u phi(sum_{j in S} x_ju)``; log determinant ``log det(s_SS + reg I)``."""
    fn = options.get("function", "facility_location")
    out = np.zeros(len(candidates), dtype=np.float64)
    for i, c in enumerate(candidates):
        if fn == "graph_cut":
            out[i] = -float(options.get("lambda_", 0.5)) * _kernel(c, c, options).sum()
        elif fn == "sum_redundancy":
            s = _kernel(c, c, options)
            out[i] = (n - 1) * 1.0 * len(c) - np.triu(s, 1).sum()
        elif fn == "feature_based":
            mass = np.asarray(c, dtype=np.float64).sum(axis=0)
            out[i] = (np.log1p(mass) if options.get("concave", "sqrt") == "log" else np.sqrt(mass)).sum()
        elif fn == "log_determinant":
            s = _kernel(c, c, options) + float(options.get("reg", 1.0)) * np.eye(len(c))
            out[i] = np.linalg.slogdet(s)[1]
    return out


def _submodular_rows(x: np.ndarray, candidates: list[np.ndarray], options: dict[str, Any],
                     totals: np.ndarray | None) -> np.ndarray:
    fn = options.get("function", "facility_location")
    values = np.zeros(len(candidates), dtype=np.float64)
    alpha = float(options.get("alpha", 0.1))
    for r0 in range(0, x.shape[0], _ROW_BLOCK):
        xb = x[r0:r0 + _ROW_BLOCK]
        for i, c in enumerate(candidates):
            s = _kernel(xb, c, options)
            if fn == "graph_cut":
                values[i] += s.sum()
            elif fn == "saturated_coverage":
                if totals is None:
                    raise InvalidInputError("saturated_coverage's evaluation needs the row totals (row_totals)")
                values[i] += np.minimum(s.sum(axis=1), alpha * totals[r0:r0 + _ROW_BLOCK]).sum()
    return values


def local_greedy(x: np.ndarray, k: int, method: str, *, seed: int, options: dict[str, Any],
                 offset: int) -> tuple[np.ndarray, np.ndarray]:
    """Round 1 on one partition: the single-machine selector's picks as global row ids, and their feature rows."""
    kk = min(k, x.shape[0])
    sel = get_selector(method, seed=seed, **options).select(kk, features=x)
    return sel.indices + offset, np.ascontiguousarray(x[sel.indices], dtype=np.float32)


def union_greedy(ids: np.ndarray, feats: np.ndarray, k: int, method: str, *, seed: int,
                 options: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Round 2: the single-machine selector on the union of the local picks (global ids and their rows)."""
    if feats.shape[0] < k:
        raise InvalidInputError(f"the partitions' picks hold {feats.shape[0]} rows, fewer than k = {k}")
    sel = get_selector(method, seed=seed, **options).select(k, features=feats)
    return ids[sel.indices], np.ascontiguousarray(feats[sel.indices])


def _similarity(method: str, options: dict[str, Any]) -> str:
    if method == "submodular":
        return str(options.get("similarity", "rbf"))
    if method == "kcenter":
        return "cosine_distance" if options.get("metric", "euclidean") == "cosine" else "euclidean_distance"
    return str(options.get("similarity", "craig"))


def evaluate_candidates(x: np.ndarray, candidates: list[np.ndarray], method: str, *,
                        options: dict[str, Any], totals: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """This partition's share of the full objective of every candidate set (rows ``(k, d)`` each).

    Returns ``(values, counts)``: ``values[c]`` is, over this partition's rows,
      - facility location / CRAIG with ``similarity="craig"``: ``sum_i min_j ||x_i - c_j||`` (CRAIG's cost;
        ``f = n D_max - cost``, so a smaller cost is a larger ``f`` without the global ``O(n^2)`` ``D_max``),
      - ``"cosine"``: ``sum_i max(0, max_j cos(x_i, c_j))`` (0 for zero rows), ``"rbf"``: ``sum_i max_j
        exp(-gamma ||x_i - c_j||^2)`` with ``gamma`` defaulting to ``1/d`` — as the single-machine selector,
      - k-center: ``max_i min_j d(x_i, c_j)`` (covering radius);
      - submodular ``graph_cut``: ``sum_i sum_{j in S} s_ij``; ``saturated_coverage``: ``sum_i min(sum_{j in S}
        s_ij, alpha totals_i)`` (``totals`` from :func:`row_totals`); the set-only functions: 0
        (their value is :func:`set_terms`);
    ``counts[c, j]`` is how many rows have ``c_j`` as their nearest element (the first on ties).
    Distances are computed in float64.
    """
    if method == "submodular" and options.get("function", "facility_location") != "facility_location":
        k = candidates[0].shape[0]
        return _submodular_rows(x, candidates, options, totals), np.zeros((len(candidates), k), dtype=np.int64)
    sim = _similarity(method, options)
    n, d = x.shape
    k = candidates[0].shape[0]
    values = np.zeros(len(candidates), dtype=np.float64)
    counts = np.zeros((len(candidates), k), dtype=np.int64)
    cosine = sim in ("cosine", "cosine_distance")
    gamma = options.get("gamma") or 1.0 / d
    # all candidates in one float64 GEMM per row block; ||x||^2 is constant along a row, so the nearest pick
    # is the argmin of ||c||^2 - 2 x.c and ||x||^2 is only added back for the chosen entries
    c = np.concatenate([np.asarray(cand, dtype=np.float64) for cand in candidates])
    if cosine:
        norm = np.linalg.norm(c, axis=1, keepdims=True)
        c = np.divide(c, norm, out=np.zeros_like(c), where=norm > 0)
    cn = np.einsum("ij,ij->i", c, c)
    for r0 in range(0, n, _ROW_BLOCK):
        xb = np.asarray(x[r0:r0 + _ROW_BLOCK], dtype=np.float64)
        if cosine:
            norm = np.linalg.norm(xb, axis=1, keepdims=True)
            xb = np.divide(xb, norm, out=np.zeros_like(xb), where=norm > 0)
        g = xb @ c.T
        if not cosine:
            xn = np.einsum("ij,ij->i", xb, xb)
            g *= -2.0
            g += cn
        g3 = g.reshape(len(xb), len(candidates), k)
        nearest = np.argmax(g3, axis=2) if cosine else np.argmin(g3, axis=2)  # (rows, candidates)
        best = np.take_along_axis(g3, nearest[:, :, None], axis=2)[:, :, 0]
        if cosine:
            # rows or picks that are zero have cosine 0 to everything (distance 1), as in the Rust core
            if sim == "cosine":
                values += np.maximum(best, 0.0).sum(axis=0)
            else:
                values = np.maximum(values, (1.0 - best).max(axis=0))
        else:
            best = np.maximum(best + xn[:, None], 0.0)
            if sim == "craig":
                values += np.sqrt(best).sum(axis=0)
            elif sim == "rbf":
                values += np.exp(-gamma * best).sum(axis=0)
            else:
                values = np.maximum(values, np.sqrt(best.max(axis=0)))
        flat = (nearest + np.arange(len(candidates)) * k).ravel()
        counts += np.bincount(flat, minlength=len(candidates) * k).reshape(len(candidates), k)
    return values, counts


def lower_is_better(method: str, options: dict[str, Any]) -> bool:
    """Whether the reduced value of :func:`evaluate_candidates` is a cost (CRAIG cost, covering radius)."""
    return method == "kcenter" or _similarity(method, options) == "craig"


def pick_best(values: np.ndarray, method: str, options: dict[str, Any]) -> int:
    """The winning candidate (0 = the merged solution; ties go to the earlier candidate)."""
    v = -values if lower_is_better(method, options) else values
    return int(np.flatnonzero(v == v.max())[0])
