"""Unlearning evaluation: accuracy, loss, calibration, membership inference, distances to the retrained model,
relearn time and cost.

Each metric is a pure function (:mod:`erasus.metrics.functional`) plus a registry class
(``erasus.get_metric("mia").compute(model, forget_loader, test_loader)``); :class:`MetricSuite` runs a
named set and, given the retrained model, reports the gaps to it (SalUn's Avg. Gap).
"""

from . import functional, llm  # noqa: F401  (llm: the causal-LM metrics register themselves on import)
from .accuracy import AccuracyMetric
from .base import Metric
from .calibration import ECEMetric
from .divergence import ActivationDistanceMetric, JSDivergenceMetric
from .efficiency import EfficiencyMetric, EfficiencyTracker, track_efficiency
from .feature_distance import FeatureDistanceMetric, capture_features
from .gap import AvgGapMetric
from .lira import LiRAMetric, train_classifier
from .loss import LossMetric
from .mia import MIAMetric
from .mia_efficacy import MIAEfficacyMetric
from .mia_loss import LossMIAMetric
from .outputs import Outputs, collect_outputs, output_cache
from .relearn import RelearnTimeMetric, relearn_time
from .suite import DEFAULT_METRICS, MetricSuite
from .weight_distance import WeightDistanceMetric, weight_distance
from .zrf import ZRFMetric

__all__ = [
    "AccuracyMetric",
    "ActivationDistanceMetric",
    "AvgGapMetric",
    "DEFAULT_METRICS",
    "ECEMetric",
    "EfficiencyMetric",
    "EfficiencyTracker",
    "FeatureDistanceMetric",
    "JSDivergenceMetric",
    "LiRAMetric",
    "LossMIAMetric",
    "LossMetric",
    "MIAEfficacyMetric",
    "MIAMetric",
    "Metric",
    "MetricSuite",
    "Outputs",
    "RelearnTimeMetric",
    "WeightDistanceMetric",
    "ZRFMetric",
    "capture_features",
    "collect_outputs",
    "functional",
    "output_cache",
    "relearn_time",
    "track_efficiency",
    "train_classifier",
    "weight_distance",
]
