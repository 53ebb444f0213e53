"""Coreset selectors. Geometric ones run in the Rust core (:mod:`erasus._core`).

``erasus.select(X, k, method="kcenter")`` is the functional entry point; every selector is also a
registry class: ``erasus.get_selector("craig", neighbors=50).select(k, features=X)``.
"""

from __future__ import annotations

from typing import Any

from ..registry import get_selector
from ..selection import Selection
from .base import Selector
from . import el2n  # noqa: F401
from . import grand  # noqa: F401
from . import uncertainty  # noqa: F401
from . import moderate  # noqa: F401
from . import upcore  # noqa: F401
from . import influence  # noqa: F401
from . import data_shapley  # noqa: F401
from . import tracin  # noqa: F401
from . import gradmatch  # noqa: F401
from . import kcenter, herding, kmeans, random, full  # noqa: F401
from . import facility_location, submodular  # noqa: F401
from . import representer  # noqa: F401
from . import glister  # noqa: F401
from . import forgetting_events  # noqa: F401
from . import min_k  # noqa: F401
from . import voting  # noqa: F401
from . import valuation_network  # noqa: F401
from . import auto  # noqa: F401

__all__ = ["Selector", "select"]


def select(x: Any, k: int | None = None, method: str = "kcenter", *, seed: int = 0, ratio: float | None = None,
           labels: Any = None, **options: Any) -> Selection:
    """Select a coreset of ``k`` rows of ``x`` (numpy array or torch tensor, shape (n, d)) with ``method``.

    ``options`` go to the selector's constructor (e.g. ``metric="cosine"`` for k-center,
    ``neighbors=50`` for sparse facility location). Deterministic for a given ``seed``.
    """
    return get_selector(method, seed=seed, **options).select(k, features=x, ratio=ratio, labels=labels)
