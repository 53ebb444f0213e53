"""The metrics' pure functions in one namespace (torchmetrics' ``functional`` style): arrays/tensors in, numbers out."""

from .accuracy import topk_accuracy
from .attack import attack_summary
from .calibration import (
    adaptive_calibration_error,
    brier_score,
    expected_calibration_error,
    maximum_calibration_error,
)
from .classification import balanced_accuracy, cohen_kappa, confusion_matrix, macro_auroc, macro_f1, matthews_corrcoef
from .contrastive import embedding_shift, matched_pair_cosine, retrieval_recall
from .cost import model_size
from .divergence import activation_distance, js_divergence, kl_divergence
from .empirical_epsilon import clopper_pearson, empirical_epsilon
from .epistemic import fisher_trace
from .feature_distance import linear_cka
from .gap import avg_gap
from .interclass_confusion import interclass_confusion
from .lira import lira_scores, logit_scaled_confidence
from .loss import mean_loss
from .mia import entropy_mia, prediction_entropy
from .mia_efficacy import mia_features, svc_mia_efficacy
from .mia_loss import loss_threshold_attack
from .mia_threshold import modified_entropy, true_label_confidence
from .speech import cer, per_speaker_wer, speaker_similarity, transcript_accuracy, wer
from .streisand import streisand_check
from .tow import tug_of_war
from .u_lira import u_lira_scores
from .zrf import zrf_score

__all__ = [
    "cer",
    "per_speaker_wer",
    "speaker_similarity",
    "transcript_accuracy",
    "wer",
    "activation_distance",
    "adaptive_calibration_error",
    "balanced_accuracy",
    "brier_score",
    "clopper_pearson",
    "cohen_kappa",
    "confusion_matrix",
    "empirical_epsilon",
    "fisher_trace",
    "interclass_confusion",
    "kl_divergence",
    "macro_auroc",
    "macro_f1",
    "matthews_corrcoef",
    "maximum_calibration_error",
    "model_size",
    "modified_entropy",
    "streisand_check",
    "true_label_confidence",
    "tug_of_war",
    "u_lira_scores",
    "attack_summary",
    "avg_gap",
    "embedding_shift",
    "entropy_mia",
    "expected_calibration_error",
    "js_divergence",
    "linear_cka",
    "lira_scores",
    "logit_scaled_confidence",
    "loss_threshold_attack",
    "matched_pair_cosine",
    "mean_loss",
    "mia_features",
    "prediction_entropy",
    "retrieval_recall",
    "svc_mia_efficacy",
    "topk_accuracy",
    "zrf_score",
]
