"""Data Shapley: exact KNN-Shapley (Jia et al., "Efficient Task-Specific Data Valuation for Nearest Neighbor Algorithms",
VLDB 2019) and truncated Monte-Carlo Shapley (Ghorbani & Zou, "Data Shapley: Equitable Valuation of Data for Machine
Learning", ICML 2019)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import numpy as np

from ..errors import InvalidInputError
from ..registry import register_selector
from ..selection import Selection
from ._common import ContextSelector, as_array, as_labels, head_inputs, score_selection

__all__ = ["DataShapleySelector", "knn_shapley", "knn_utility", "logistic_utility", "tmc_shapley"]

Utility = Callable[[np.ndarray], float]


def _distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    from scipy.spatial.distance import cdist

    return cdist(a, b)


def knn_shapley(x: np.ndarray, y: np.ndarray, x_val: np.ndarray | None = None, y_val: np.ndarray | None = None, *,
                neighbors: int = 5, chunk: int = 256) -> np.ndarray:
    """Exact Shapley values of the K-NN utility (Jia et al. 2019, Theorem 1), averaged over validation points.

    For one validation point, with training points sorted by distance ``alpha_1 .. alpha_N``:
    ``s_{alpha_N} = 1[y_{alpha_N} = y_val] / N`` and
    ``s_{alpha_i} = s_{alpha_{i+1}} + (1[y_{alpha_i} = y_val] - 1[y_{alpha_{i+1}} = y_val]) / K * min(K, i) / i``.
    Without validation data every training point is scored as a validation point against the other ``n - 1``.
    """
    n = x.shape[0]
    self_mode = x_val is None or y_val is None
    if self_mode and n < 2:
        raise InvalidInputError("KNN-Shapley without validation data needs at least 2 samples")
    xv, yv = (x, y) if x_val is None or y_val is None else (x_val, y_val)
    m = xv.shape[0]
    big_n = n - 1 if self_mode else n
    values = np.zeros(n)
    pos = np.arange(1, big_n + 1)
    step = np.minimum(neighbors, pos) / pos / neighbors
    for start in range(0, m, chunk):
        d = _distances(xv[start:start + chunk], x)
        rows = np.arange(d.shape[0])
        if self_mode:
            d[rows, start + rows] = np.inf  # a point is not its own neighbour
        order = np.argsort(d, axis=1, kind="stable")[:, :big_n]
        match = (y[order] == yv[start:start + chunk, None]).astype(np.float64)
        s = np.empty_like(match)
        s[:, -1] = match[:, -1] / big_n
        for i in range(big_n - 2, -1, -1):
            s[:, i] = s[:, i + 1] + (match[:, i] - match[:, i + 1]) * step[i]
        np.add.at(values, order.ravel(), s.ravel())
    return values / m


def knn_utility(x: np.ndarray, y: np.ndarray, x_val: np.ndarray, y_val: np.ndarray, *, neighbors: int = 5) -> Utility:
    """``U(S) = mean_val (1/K) sum_{k <= min(K, |S|)} 1[y_{alpha_k(S)} = y_val]`` (the utility KNN-Shapley values)."""
    d = _distances(x_val, x)

    def utility(subset: np.ndarray) -> float:
        if subset.size == 0:
            return 0.0
        kk = min(neighbors, subset.size)
        near = np.argsort(d[:, subset], axis=1, kind="stable")[:, :kk]
        return float((y[subset][near] == y_val[:, None]).sum(axis=1).mean() / neighbors)

    return utility


def logistic_utility(x: np.ndarray, y: np.ndarray, x_val: np.ndarray, y_val: np.ndarray, *, seed: int = 0) -> Utility:
    """Validation accuracy of a scikit-learn logistic regression fit on ``S`` (Ghorbani & Zou's learner).

    ``U(empty) = 1 / C`` (chance); a single-class ``S`` predicts that class.
    """
    from sklearn.linear_model import LogisticRegression

    n_classes = len(np.unique(np.concatenate([y, y_val])))

    def utility(subset: np.ndarray) -> float:
        if subset.size == 0:
            return 1.0 / n_classes
        classes = np.unique(y[subset])
        if classes.size == 1:
            return float(np.mean(y_val == classes[0]))
        model = LogisticRegression(max_iter=500, random_state=seed).fit(x[subset], y[subset])
        return float(model.score(x_val, y_val))

    return utility


def tmc_shapley(utility: Utility, n: int, *, permutations: int, truncation: float = 0.01, seed: int = 0,
                progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Truncated Monte-Carlo Shapley (Ghorbani & Zou 2019, Alg. 1).

    For each random permutation ``pi``, scan its prefixes and credit ``pi_j`` with ``U(pi[:j]) - U(pi[:j-1])``;
    once ``|U(D) - U(pi[:j-1])| < truncation * |U(D)|`` the remaining marginal contributions are taken as 0.
    Returns ``(values, standard errors)`` over the permutations.
    """
    from tqdm.auto import tqdm

    if permutations < 1:
        raise InvalidInputError(f"permutations must be >= 1, got {permutations}")
    if truncation < 0:
        raise InvalidInputError(f"truncation must be >= 0, got {truncation}")
    rng = np.random.default_rng(seed)
    full, empty = float(utility(np.arange(n))), float(utility(np.arange(0)))
    marg = np.zeros((permutations, n))
    for t in tqdm(range(permutations), desc="TMC-Shapley", disable=not progress, leave=False):
        perm = rng.permutation(n)
        prev = empty
        for j in range(n):
            if truncation > 0 and abs(full - prev) < truncation * abs(full):
                break
            cur = float(utility(perm[:j + 1]))
            marg[t, perm[j]] = cur - prev
            prev = cur
    values = marg.mean(axis=0)
    stderr = marg.std(axis=0, ddof=1) / np.sqrt(permutations) if permutations > 1 else np.full(n, np.inf)
    return values, stderr


@register_selector("data_shapley")
class DataShapleySelector(ContextSelector):
    """Data Shapley: keep the ``k`` samples with the largest Shapley value ``phi_i = E_pi[U(P_i^pi + i) - U(P_i^pi)]``.

    ``estimator="knn"`` (default): exact KNN-Shapley (Jia et al., VLDB 2019) in ``O(m n log n)``, for the utility
    of a ``neighbors``-NN classifier on the features; without ``val_features`` each sample is valued as a
    validation point against the others. ``estimator="tmc"``: truncated Monte-Carlo Shapley (Ghorbani & Zou,
    ICML 2019) over ``permutations`` random orders with ``truncation`` (relative performance tolerance), with
    ``utility="knn"``, ``"logistic"`` (scikit-learn logistic regression, validation accuracy) or a callable
    ``utility(indices) -> float``; it needs validation data.

    ``features`` are representations ``(n, d)`` with ``labels``; per call ``val_features=``/``val_labels=``.
    With ``model=``/``data=`` (and ``val_data=``) the representations are the last linear layer's inputs.
    """

    call_inputs = ("val_features", "val_labels", "val_data")

    def __init__(self, *, seed: int = 0, estimator: Literal["knn", "tmc"] = "knn", neighbors: int = 5,
                 utility: str | Utility = "logistic", permutations: int = 100, truncation: float = 0.01,
                 layer: str | None = None, batch_size: int | None = None, progress: bool = False) -> None:
        if estimator not in ("knn", "tmc"):
            raise InvalidInputError(f"estimator must be 'knn' or 'tmc', got {estimator!r}")
        if int(neighbors) < 1:
            raise InvalidInputError(f"neighbors must be >= 1, got {neighbors}")
        if not callable(utility) and utility not in ("knn", "logistic"):
            raise InvalidInputError(f"utility must be 'knn', 'logistic' or a callable, got {utility!r}")
        super().__init__(seed=seed, estimator=estimator, neighbors=neighbors, utility=utility,
                         permutations=permutations, truncation=truncation, layer=layer, batch_size=batch_size)
        self.estimator, self.neighbors, self.utility = estimator, int(neighbors), utility
        self.permutations, self.truncation = int(permutations), float(truncation)
        self.layer, self.batch_size, self.progress = layer, batch_size, progress

    def _from_model(self, model: Any, data: Any, *, task: Any, context: dict[str, Any]) -> tuple[Any, Any]:
        out = head_inputs(model, data, task=task, layer=self.layer, batch_size=self.batch_size)
        if context.get("val_data") is not None:
            val = head_inputs(model, context["val_data"], task=task, layer=self.layer, batch_size=self.batch_size)
            context["val_features"], context["val_labels"] = val["embeddings"], val["labels"]
        return out["embeddings"], out["labels"]

    def _select(self, x: np.ndarray, k: int, *, labels: np.ndarray | None) -> Selection:
        xd = x.astype(np.float64)
        y = as_labels(labels, x.shape[0])
        xv, yv = self._context.get("val_features"), self._context.get("val_labels")
        if xv is not None:
            xv = as_array(xv, name="val_features")
            if xv.shape[1] != x.shape[1]:
                raise InvalidInputError(f"val_features have {xv.shape[1]} columns, the features have {x.shape[1]}")
            yv = as_labels(yv, xv.shape[0], what="val_labels")
        meta: dict[str, Any] = {"estimator": self.estimator}
        if self.estimator == "knn":
            values = knn_shapley(xd, y, xv, yv, neighbors=self.neighbors)
        else:
            if callable(self.utility):
                utility = self.utility
            elif xv is None or yv is None:
                raise InvalidInputError("TMC-Shapley needs validation data: pass val_features= and val_labels= "
                                        "(or val_data= with a model), or a callable utility=")
            elif self.utility == "knn":
                utility = knn_utility(xd, y, xv, yv, neighbors=self.neighbors)
            else:
                utility = logistic_utility(xd, y, xv, yv, seed=self.seed)
            values, stderr = tmc_shapley(utility, x.shape[0], permutations=self.permutations,
                                         truncation=self.truncation, seed=self.seed, progress=self.progress)
            meta["stderr"] = stderr
        return score_selection(values, k, metadata=meta)
