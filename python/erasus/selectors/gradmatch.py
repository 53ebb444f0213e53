"""GRAD-MATCH (Killamsetty et al., "GRAD-MATCH: Gradient Matching based Data Subset Selection for Efficient Deep Model
Training", ICML 2021): weighted subset whose gradient sum matches the full gradient, by orthogonal matching pursuit."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InvalidInputError
from ..registry import register_selector
from ..selection import Selection
from ._common import ContextSelector, as_array, as_labels, model_outputs, plain

__all__ = ["GradMatchSelector", "omp_gradmatch"]


def _ridge_nnls(a: np.ndarray, b: np.ndarray, lam: float) -> np.ndarray:
    """``argmin_{w >= 0} ||a w - b||^2 + lam ||w||^2`` (scipy NNLS on the ridge-augmented system)."""
    from scipy.optimize import nnls

    if lam > 0:
        a = np.vstack([a, np.sqrt(lam) * np.eye(a.shape[1])])
        b = np.concatenate([b, np.zeros(a.shape[1])])
    return nnls(a, b, maxiter=50 * a.shape[1])[0]


def omp_gradmatch(g: np.ndarray, target: np.ndarray, k: int, *, lam: float = 0.0, progress: bool = False
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Non-negative OMP for ``min_{|S| <= k, w >= 0} || sum_{i in S} w_i g_i - target ||^2 + lam ||w||^2``.

    Each step adds ``argmax_{i not in S} <g_i, r>`` (the residual ``r`` is orthogonal to what is already
    explained) and refits all weights of ``S`` by ridge NNLS. Returns ``(indices, weights, objectives)`` with
    the objective after each step: it never increases, since each refit could keep the previous weights.
    """
    from tqdm.auto import tqdm

    chosen: list[int] = []
    objectives = np.empty(k)
    available = np.ones(g.shape[0], dtype=bool)
    r, w = target.copy(), np.zeros(0)
    for step in tqdm(range(k), desc="GradMatch OMP", disable=not progress, leave=False):
        corr = g @ r
        corr[~available] = -np.inf
        i = int(np.argmax(corr))
        chosen.append(i)
        available[i] = False
        w = _ridge_nnls(g[chosen].T, target, lam)
        r = target - g[chosen].T @ w
        objectives[step] = r @ r + lam * (w @ w)
    return np.asarray(chosen, dtype=np.int64), w, objectives


@register_selector("gradmatch")
class GradMatchSelector(ContextSelector):
    """GRAD-MATCH (Killamsetty et al., ICML 2021): OMP for ``min_{S, w >= 0} ||sum_{i in S} w_i g_i - sum_j g_j||^2 + lam||w||^2``.

    ``g_i`` are per-sample (projected) gradients: ``features`` ``(n, d)``, or from ``model=``/``data=`` via
    :func:`erasus.features.per_sample_gradients`. The target is the full gradient sum, or ``n`` times the mean
    of ``target_features=`` (the paper's validation-gradient variant). ``weights`` are the OMP weights: the
    weighted coreset gradient ``sum_S w_i g_i`` approximates the full gradient sum. They are not normalised:
    far from a stationary point they sum to about ``n``, near one (a converged model) the target sum is small and
    so are they. Once the residual is explained, later picks get zero weight. ``metadata['objectives']`` holds
    the objective after each step. ``per_class=True`` (CORDS' default; needs ``labels``) splits ``k`` over the
    classes in proportion to their sizes and matches each class's own gradient sum; picks are interleaved
    class by class. Cost ``O(k (n d + d k^2))``.
    """

    call_inputs = ("target", "target_features", "feature_options")

    default_features = "gradients"

    def __init__(self, *, seed: int = 0, lam: float = 0.5, per_class: bool = False, progress: bool = False) -> None:
        if lam < 0:
            raise InvalidInputError(f"lam (ridge penalty) must be >= 0, got {lam}")
        super().__init__(seed=seed, lam=lam, per_class=per_class)
        self.lam, self.per_class, self.progress = float(lam), bool(per_class), progress

    def _from_model(self, model: Any, data: Any, *, task: Any, context: dict[str, Any]) -> tuple[Any, Any]:
        from .. import features

        opts = {"seed": self.seed, "progress": False, **context.pop("feature_options", {})}
        if context.get("target") is not None:
            context["target_features"] = features.per_sample_gradients(model, context["target"], task=task, **opts)
        labels = model_outputs(model, data, task=task)[1] if self.per_class else None
        return features.per_sample_gradients(model, data, task=task, **opts), labels

    def _select(self, x: np.ndarray, k: int, *, labels: np.ndarray | None) -> Selection:
        g = x.astype(np.float64)
        if self.per_class:
            return self._per_class(g, k, as_labels(labels, g.shape[0]))
        if self._context.get("target_features") is not None:
            tf = as_array(self._context["target_features"], name="target_features")
            if tf.shape[1] != g.shape[1]:
                raise InvalidInputError(f"target_features have {tf.shape[1]} columns, the gradients have {g.shape[1]}")
            target = g.shape[0] * tf.mean(axis=0)
        else:
            target = g.sum(axis=0)
        idx, w, res = omp_gradmatch(g, target, k, lam=self.lam, progress=self.progress)
        return Selection(idx, w, gains=-np.diff(res, prepend=target @ target), objective=float(res[-1]),
                         metadata=plain({"objectives": res, "target_norm": float(np.linalg.norm(target))}))

    def _per_class(self, g: np.ndarray, k: int, y: np.ndarray) -> Selection:
        if self._context.get("target_features") is not None:
            raise InvalidInputError("per_class=True matches each class's own gradient sum; drop target_features")
        classes, counts = np.unique(y, return_counts=True)
        quota = _split_budget(k, counts)
        runs, objectives = [], {}
        for c, q in zip(classes.tolist(), quota.tolist()):
            if q == 0:
                continue
            rows = np.flatnonzero(y == c)
            idx, w, res = omp_gradmatch(g[rows], g[rows].sum(axis=0), q, lam=self.lam, progress=self.progress)
            runs.append((rows[idx], w))
            objectives[str(c)] = res
        order, weights = [], []
        for step in range(int(quota.max())):
            for picked, w in runs:
                if step < picked.shape[0]:
                    order.append(int(picked[step]))
                    weights.append(float(w[step]))
        total = float(sum(res[-1] for res in objectives.values()))
        return Selection(np.asarray(order), np.asarray(weights), objective=total,
                         metadata=plain({"per_class_objectives": objectives, "class_budget": {str(c): int(q) for c, q in zip(classes, quota)}}))


def _split_budget(k: int, counts: np.ndarray) -> np.ndarray:
    """``k`` split over groups in proportion to ``counts`` (largest remainder, never above a group's size)."""
    exact = k * counts / counts.sum()
    quota = np.minimum(np.floor(exact).astype(np.int64), counts)
    for i in np.argsort(-(exact - quota), kind="stable"):
        if quota.sum() == k:
            break
        if quota[i] < counts[i]:
            quota[i] += 1
    while quota.sum() < k:  # only when capped groups left budget over: fill the groups with room, largest first
        i = int(np.argmax(np.where(quota < counts, counts - quota, -1)))
        quota[i] += 1
    return quota
