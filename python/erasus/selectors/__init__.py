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
    memorization,
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

from .auto import AutoSelector
from .data_shapley import DataShapleySelector
from .el2n import EL2NSelector
from .facility_location import CraigSelector, FacilityLocationSelector
from .forgetting_events import ForgettingEventsSelector
from .full import FullSelector
from .glister import GlisterSelector
from .gradmatch import GradMatchSelector
from .grand import GraNdSelector
from .herding import HerdingSelector
from .influence import InfluenceSelector
from .kcenter import KCenterSelector
from .kmeans import KMeansSelector
from .memorization import MemorizationSelector
from .min_k import MinKSelector
from .moderate import ModerateSelector
from .random import RandomSelector
from .representer import RepresenterSelector
from .submodular import SubmodularSelector
from .tracin import TracInSelector
from .uncertainty import UncertaintySelector
from .upcore import UPCORESelector
from .valuation_network import ValuationNetworkSelector
from .voting import VotingSelector

# the seed specification's names for two of them: GraNd is the expected gradient norm (Paul et al., 2021) and
# the specification's "forgetting score" is an alias of its forgetting-events selector
GradientNormSelector = GraNdSelector
ForgettingScoreSelector = ForgettingEventsSelector

__all__ = [
    "AutoSelector",
    "CraigSelector",
    "DataShapleySelector",
    "EL2NSelector",
    "FacilityLocationSelector",
    "ForgettingEventsSelector",
    "ForgettingScoreSelector",
    "FullSelector",
    "GlisterSelector",
    "GraNdSelector",
    "GradMatchSelector",
    "GradientNormSelector",
    "HerdingSelector",
    "InfluenceSelector",
    "KCenterSelector",
    "KMeansSelector",
    "MemorizationSelector",
    "MinKSelector",
    "ModerateSelector",
    "RandomSelector",
    "RepresenterSelector",
    "Selector",
    "SubmodularSelector",
    "TracInSelector",
    "UPCORESelector",
    "UncertaintySelector",
    "ValuationNetworkSelector",
    "VotingSelector",
    "select",
]
