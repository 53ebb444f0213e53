"""UPCORE-style outlier pruning (Patil et al., "UPCORE: Utility-Preserving Coreset Selection for Balanced Unlearning",
2025) with an isolation forest (Liu, Ting & Zhou, ICDM 2008; scikit-learn's ``IsolationForest``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InvalidInputError
from ..registry import register_selector
from ..selection import Selection
from ._common import ContextSelector, head_inputs, score_selection

__all__ = ["UPCORESelector"]


@register_selector("upcore")
class UPCORESelector(ContextSelector):
    """UPCORE (Patil et al. 2025): drop the forget-set outliers, keep the ``k`` most typical samples.

    An isolation forest is fit on the representations; the anomaly score of ``x`` is
    ``s(x) = 2^{-E[h(x)] / c(n)}`` (mean isolation depth ``h`` over the trees), and the ``k`` samples with the
    *lowest* anomaly score (sklearn's highest ``score_samples``) are kept: outliers in the forget set are what
    makes unlearning damage the model's utility. ``features`` are hidden representations ``(n, d)``; with
    ``model=`` and ``data=`` they are the inputs of the last linear layer (or ``layer=``). ``n_estimators``,
    ``max_samples`` and ``contamination`` go to :class:`sklearn.ensemble.IsolationForest`.
    """

    def __init__(self, *, seed: int = 0, n_estimators: int = 100, max_samples: float | str = "auto",
                 layer: str | None = None, batch_size: int | None = None) -> None:
        if int(n_estimators) < 1:
            raise InvalidInputError(f"n_estimators must be >= 1, got {n_estimators}")
        super().__init__(seed=seed, n_estimators=n_estimators, max_samples=max_samples, layer=layer, batch_size=batch_size)
        self.n_estimators, self.max_samples = int(n_estimators), max_samples
        self.layer, self.batch_size = layer, batch_size

    def _from_model(self, model: Any, data: Any, *, task: Any, context: dict[str, Any]) -> tuple[Any, Any]:
        out = head_inputs(model, data, task=task, layer=self.layer, batch_size=self.batch_size)
        return out["embeddings"], out["labels"]

    def _select(self, x: np.ndarray, k: int, *, labels: np.ndarray | None) -> Selection:
        from sklearn.ensemble import IsolationForest

        if not np.all(np.isfinite(x)):
            raise InvalidInputError("features contain NaN or infinity")
        forest = IsolationForest(n_estimators=self.n_estimators, max_samples=self.max_samples,
                                 random_state=self.seed).fit(x)
        normality = forest.score_samples(x)  # = -s(x): higher is more typical
        return score_selection(normality, k, largest=True, metadata={"anomaly_scores": -normality})
