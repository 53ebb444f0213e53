"""Kernel herding / greedy moment matching (Welling, ICML 2009; Chen, Welling & Smola, UAI 2010), in Rust."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from .. import _core
from ..registry import register_selector
from ..selection import Selection
from ._geometry import TorchTwin, to_selection
from ._torch import check_backend
from .base import Selector

__all__ = ["HerdingSelector"]


@register_selector("herding")
class HerdingSelector(TorchTwin, Selector):
    """Herding with a linear kernel: step ``t`` adds ``argmin_{x not in S} ||(sum_S + x)/(t+1) - mean(X)||``.

    The arg-min of the papers (DeepCore's arg-max picks the worst row). ``gains[t]`` is the moment
    error ``||mean(S_t) - mean(X)||`` after step ``t`` and ``objective`` the final one; weights are ones.
    Deterministic (``seed`` is not used; ties go to the smaller row); labels are not used.

    Args:
        backend: ``"auto"`` (default: the Rust core, except that a CUDA tensor is selected on its device with torch
            ops, and ``block_rows`` or an ``np.memmap`` larger than half the RAM streams row blocks through torch),
            ``"rust"`` or ``"torch"`` (the torch twin on the tensor's device; the same picks up to float ties).
        block_rows: rows per block of the streamed torch path (memory ``O(block_rows * d)`` beside ``O(n)``).
    """

    def __init__(self, *, seed: int = 0, backend: Literal["auto", "rust", "torch"] = "auto",
                 block_rows: int | None = None) -> None:
        check_backend(backend, block_rows)
        super().__init__(seed=seed, backend=backend, block_rows=block_rows)

    def _select(self, x: np.ndarray, k: int, *, labels: np.ndarray | None) -> Selection:
        return to_selection(_core.herding(x, k), metadata={})

    def _select_torch(self, rows: Any, k: int, *, labels: np.ndarray | None) -> Selection:
        from . import _torch

        return to_selection(_torch.herding(rows, k), metadata={"backend": "torch"})
