"""Kernel herding / greedy moment matching (Welling, ICML 2009; Chen, Welling & Smola, UAI 2010), in Rust."""

from __future__ import annotations

import numpy as np

from .. import _core
from ..registry import register_selector
from ..selection import Selection
from ._geometry import to_selection
from .base import Selector

__all__ = ["HerdingSelector"]


@register_selector("herding")
class HerdingSelector(Selector):
    """Herding with a linear kernel: step ``t`` adds ``argmin_{x not in S} ||(sum_S + x)/(t+1) - mean(X)||``.

    The arg-min of the papers (DeepCore's arg-max picks the worst row). ``gains[t]`` is the moment
    error ``||mean(S_t) - mean(X)||`` after step ``t`` and ``objective`` the final one; weights are ones.
    Deterministic (``seed`` is not used; ties go to the smaller row); labels are not used.
    """

    def __init__(self, *, seed: int = 0) -> None:
        super().__init__(seed=seed)

    def _select(self, x: np.ndarray, k: int, *, labels: np.ndarray | None) -> Selection:
        return to_selection(_core.herding(x, k), metadata={})
