"""The metrics' pure functions in one namespace (torchmetrics' ``functional`` style): arrays/tensors in, numbers out."""

from .accuracy import topk_accuracy
from .attack import attack_summary
from .calibration import expected_calibration_error
from .divergence import activation_distance, js_divergence
from .feature_distance import linear_cka
from .gap import avg_gap
from .lira import lira_scores, logit_scaled_confidence
from .loss import mean_loss
from .mia import entropy_mia, prediction_entropy
from .mia_efficacy import mia_features, svc_mia_efficacy
from .mia_loss import loss_threshold_attack
from .zrf import zrf_score

__all__ = [
    "activation_distance",
    "attack_summary",
    "avg_gap",
    "entropy_mia",
    "expected_calibration_error",
    "js_divergence",
    "linear_cka",
    "lira_scores",
    "logit_scaled_confidence",
    "loss_threshold_attack",
    "mean_loss",
    "mia_features",
    "prediction_entropy",
    "svc_mia_efficacy",
    "topk_accuracy",
    "zrf_score",
]
