"""Uniform random subset: the baseline every coreset has to beat."""

from __future__ import annotations

import numpy as np

from ..registry import register_selector
from ..selection import Selection
from ._geometry import rust_seed
from .base import Selector

__all__ = ["RandomSelector"]


@register_selector("random")
class RandomSelector(Selector):
    """``k`` rows uniformly at random without replacement (``numpy.random.default_rng(seed).choice``).

    Weights are ones (an unweighted subset; multiply by ``n / k`` for an unbiased estimate of a sum over
    all rows). Only the number of rows of the features is used; labels are not used.
    """

    needs_features = False

    def __init__(self, *, seed: int = 0) -> None:
        super().__init__(seed=seed)

    def _select(self, x: np.ndarray, k: int, *, labels: np.ndarray | None) -> Selection:
        indices = np.random.default_rng(rust_seed(self.seed)).choice(x.shape[0], size=k, replace=False)
        return Selection(indices, np.ones(k, dtype=np.float32), metadata={})
