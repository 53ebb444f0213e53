"""Moderate coreset (Xia et al., "Moderate Coreset: A Universal Method of Data Selection for Real-world Data-efficient
Deep Learning", ICLR 2023)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..registry import register_selector
from ..selection import Selection
from ._common import ContextSelector, as_labels, head_inputs, plain

__all__ = ["ModerateSelector", "moderate_distances"]


def moderate_distances(x: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
    """``d_i = || z_i - mean_{j: y_j = y_i} z_j ||_2`` (one centre for all rows when ``labels`` is None)."""
    x = np.asarray(x, dtype=np.float64)
    groups = np.zeros(x.shape[0], dtype=np.int64) if labels is None else labels
    d = np.empty(x.shape[0])
    for c in np.unique(groups):
        rows = groups == c
        d[rows] = np.linalg.norm(x[rows] - x[rows].mean(axis=0), axis=1)
    return d


@register_selector("moderate")
class ModerateSelector(ContextSelector):
    """Moderate-DS (Xia et al., ICLR 2023): keep the samples whose distance to their class centre is closest to the median.

    ``d_i = ||z_i - c_{y_i}||`` with ``c_y`` the mean representation of class ``y`` (one centre without
    labels); sorting all ``d_i``, the paper keeps the window of ``k`` samples around the median distance.
    The selection is that window, ranked by closeness to the median. ``features`` are representations
    ``(n, d)``; with ``model=`` and ``data=`` they are the inputs of the last linear layer (or ``layer=``).
    """

    def __init__(self, *, seed: int = 0, layer: str | None = None, batch_size: int | None = None) -> None:
        super().__init__(seed=seed, layer=layer, batch_size=batch_size)
        self.layer, self.batch_size = layer, batch_size

    def _from_model(self, model: Any, data: Any, *, task: Any, context: dict[str, Any]) -> tuple[Any, Any]:
        out = head_inputs(model, data, task=task, layer=self.layer, batch_size=self.batch_size)
        return out["embeddings"], out["labels"]

    def _select(self, x: np.ndarray, k: int, *, labels: np.ndarray | None) -> Selection:
        y = None if labels is None else as_labels(labels, x.shape[0])
        d = moderate_distances(x, y)
        n = d.shape[0]
        by_distance = np.argsort(d, kind="stable")
        start = round(n / 2 - k / 2)
        start = min(max(start, 0), n - k)
        window = by_distance[start:start + k]
        median = float(np.median(d))
        order = window[np.argsort(np.abs(d[window] - median), kind="stable")]
        return Selection(order, np.ones(k, dtype=np.float32), gains=d[order],
                         metadata=plain({"scores": d, "median_distance": median}))
