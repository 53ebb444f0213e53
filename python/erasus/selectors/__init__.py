"""Coreset selectors. Geometric ones run in the Rust core (:mod:`erasus._core`).

``erasus.select(X, k, method="kcenter")`` is the functional entry point; every selector is also a
registry class: ``erasus.get_selector("craig", neighbors=50).select(k, features=X)``.
"""

from __future__ import annotations

from ..selection import select
from .base import Selector
# every method module registers itself; this package is imported on the first registry lookup, not by
# `import erasus`
from . import (  # noqa: F401
    auto,
    data_shapley,
    el2n,
    facility_location,
    forgetting_events,
    full,
    glister,
    gradmatch,
    grand,
    herding,
    influence,
    kcenter,
    kmeans,
    min_k,
    moderate,
    random,
    representer,
    submodular,
    tracin,
    uncertainty,
    upcore,
    valuation_network,
    voting,
)

__all__ = ["Selector", "select"]
