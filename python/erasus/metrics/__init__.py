"""Unlearning evaluation, grouped as the specification's section 6: forgetting (distances and gaps to the
retrained model, relearn time, interclass confusion, ToW, epistemic uncertainty), utility (accuracy, F1,
calibration ...), efficiency (cost, model size, speed-up) and privacy (membership inference, LiRA, U-LiRA,
empirical epsilon, Streisand check). Every metric class carries its ``group``.

Each metric is a pure function (:mod:`erasus.metrics.functional`) plus a registry class
(``erasus.get_metric("mia").compute(model, forget_loader, test_loader)``); :class:`MetricSuite` runs a
named set and, given the retrained model, reports the gaps to it (SalUn's Avg. Gap).
"""

from . import functional, llm  # noqa: F401  (llm: the causal-LM metrics register themselves on import)
from .accuracy import AccuracyMetric, VideoAccuracyMetric
from .base import GROUPS, Metric
from .calibration import ACEMetric, BrierMetric, ECEMetric, MCEMetric
from .classification import AUROCMetric, BalancedAccuracyMetric, CohenKappaMetric, F1Metric, MCCMetric
from .contrastive import (CascadeMetric, ContrastiveMIAMetric, MatchedPairCosineMetric, RetrievalMetric,
                          ZeroShotAccuracyMetric)
from .cost import ModelSizeMetric, SpeedupMetric
from .divergence import ActivationDistanceMetric, JSDivergenceMetric, KLDivergenceMetric
from .efficiency import EfficiencyMetric, EfficiencyTracker, track_efficiency
from .empirical_epsilon import EmpiricalEpsilonMetric
from .epistemic import EpistemicUncertaintyMetric
from .feature_distance import FeatureDistanceMetric, capture_features
from .gap import AvgGapMetric
from .generation import (CLIPScoreMetric, ErasureAccuracyMetric, FIDMetric, GenerationDistanceMetric, KIDMetric,
                         RetainedAccuracyMetric)
from .interclass_confusion import InterclassConfusionMetric
from .lira import LiRAMetric, train_classifier
from .llm import (
    AnswerProbabilityMetric,
    ExactMemorizationMetric,
    ExtractionStrengthMetric,
    ForgetQualityMetric,
    ModelUtilityMetric,
    MultipleChoiceAccuracyMetric,
    PerplexityMetric,
    PrivLeakMetric,
    RougeMetric,
    TruthRatioMetric,
)
from .loss import LossMetric
from .mia import MIAMetric
from .mia_efficacy import MIAEfficacyMetric
from .mia_loss import LossMIAMetric
from .mia_threshold import MIAConfidenceMetric, MIAModifiedEntropyMetric
from .outputs import Outputs, collect_outputs, output_cache
from .relearn import AnamnesisIndexMetric, RelearnTimeMetric, relearn_time
from .speech import CERMetric, SpeakerSimilarityMetric, WERMetric
from .streisand import StreisandMetric
from .suite import DEFAULT_METRICS, MetricSuite
from .tow import ToWMetric
from .u_lira import ULiRAMetric
from .weight_distance import WeightDistanceMetric, weight_distance
from .zrf import ZRFMetric

# the seed specification's name for its loss-threshold membership-inference metric (Yeom et al., 2018)
MembershipInferenceMetric = LossMIAMetric

__all__ = [
    "ACEMetric",
    "CLIPScoreMetric",
    "ErasureAccuracyMetric",
    "FIDMetric",
    "GenerationDistanceMetric",
    "KIDMetric",
    "RetainedAccuracyMetric",
    "AUROCMetric",
    "AccuracyMetric",
    "VideoAccuracyMetric",
    "AnamnesisIndexMetric",
    "ActivationDistanceMetric",
    "AnswerProbabilityMetric",
    "AvgGapMetric",
    "BalancedAccuracyMetric",
    "BrierMetric",
    "CohenKappaMetric",
    "CascadeMetric",
    "ContrastiveMIAMetric",
    "DEFAULT_METRICS",
    "ECEMetric",
    "EfficiencyMetric",
    "EfficiencyTracker",
    "EmpiricalEpsilonMetric",
    "EpistemicUncertaintyMetric",
    "F1Metric",
    "FeatureDistanceMetric",
    "GROUPS",
    "InterclassConfusionMetric",
    "ExactMemorizationMetric",
    "ExtractionStrengthMetric",
    "FeatureDistanceMetric",
    "ForgetQualityMetric",
    "JSDivergenceMetric",
    "KLDivergenceMetric",
    "LiRAMetric",
    "LossMIAMetric",
    "LossMetric",
    "MCCMetric",
    "MCEMetric",
    "MIAConfidenceMetric",
    "MatchedPairCosineMetric",
    "MIAEfficacyMetric",
    "MIAMetric",
    "MIAModifiedEntropyMetric",
    "Metric",
    "MetricSuite",
    "ModelSizeMetric",
    "MembershipInferenceMetric",
    "Metric",
    "MetricSuite",
    "ModelUtilityMetric",
    "MultipleChoiceAccuracyMetric",
    "Outputs",
    "PerplexityMetric",
    "PrivLeakMetric",
    "RelearnTimeMetric",
    "WERMetric",
    "CERMetric",
    "SpeakerSimilarityMetric",
    "SpeedupMetric",
    "StreisandMetric",
    "ToWMetric",
    "ULiRAMetric",
    "RetrievalMetric",
    "RougeMetric",
    "TruthRatioMetric",
    "WeightDistanceMetric",
    "ZRFMetric",
    "ZeroShotAccuracyMetric",
    "capture_features",
    "collect_outputs",
    "functional",
    "output_cache",
    "relearn_time",
    "track_efficiency",
    "train_classifier",
    "weight_distance",
]
