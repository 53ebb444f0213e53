"""Metric-based membership inference: confidence and modified-entropy thresholds (Song & Mittal, USENIX
Security 2021, "Systematic Evaluation of Privacy Risks of Machine Learning Models").

Members are the forget samples, non-members the test samples; the attack's score is the model's confidence in
the true label ``p_y`` (Yeom et al. 2018's and Song & Mittal's ``M_conf``), or minus the modified entropy

    ``Mentr(p, y) = -(1 - p_y) log p_y - sum_{j != y} p_j log(1 - p_j)``

(Song & Mittal, eq. 4: lower for members). The threshold sweep is scored by :func:`attack_summary` (AUC,
balanced accuracy, advantage, TPR at low FPR); the paper's class-dependent thresholds learned on shadow
models are not used here — every threshold is swept, which upper-bounds any single threshold's accuracy.
"""

from __future__ import annotations

import abc
from typing import Any

import torch

from ..errors import InvalidInputError
from ..registry import register_metric
from .attack import attack_summary
from .base import Metric
from .outputs import class_outputs

__all__ = ["true_label_confidence", "modified_entropy", "MIAConfidenceMetric", "MIAModifiedEntropyMetric"]

_TINY = 1e-30


def _probs(logits: Any, labels: Any) -> tuple[torch.Tensor, torch.Tensor]:
    logits, labels = torch.as_tensor(logits), torch.as_tensor(labels).long()
    if logits.ndim != 2 or labels.shape != (logits.shape[0],) or logits.shape[1] < 2:
        raise InvalidInputError(f"need logits (N, C >= 2) and labels (N,), got {tuple(logits.shape)}, {tuple(labels.shape)}")
    if labels.numel() and (labels.min() < 0 or labels.max() >= logits.shape[1]):
        raise InvalidInputError(f"labels must lie in [0, {logits.shape[1] - 1}]")
    return torch.softmax(logits.double(), dim=1), labels.to(logits.device)


def true_label_confidence(logits: Any, labels: Any) -> torch.Tensor:
    """``p_y``: the softmax probability of the true label, float64 (N,)."""
    p, y = _probs(logits, labels)
    return p.gather(1, y[:, None]).squeeze(1)


def modified_entropy(logits: Any, labels: Any) -> torch.Tensor:
    """Song & Mittal's ``Mentr(p, y) = -(1 - p_y) log p_y - sum_{j != y} p_j log(1 - p_j)``, float64 (N,)."""
    p, y = _probs(logits, labels)
    py = p.gather(1, y[:, None]).squeeze(1)
    others = p.scatter(1, y[:, None], 0.0)
    return -(1 - py) * torch.log(py.clamp_min(_TINY)) - (others * torch.log((1 - others).clamp_min(_TINY))).sum(1)


class _ThresholdMIA(Metric):
    inputs = ("forget", "test")
    group = "privacy"
    key = ""

    @abc.abstractmethod
    def _score(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Per-sample attack score, larger for members."""

    def compute(self, model: torch.nn.Module, forget: Any, test: Any) -> dict[str, float]:
        f = self._score(*class_outputs(self._collect(model, forget), metric=self.key))
        t = self._score(*class_outputs(self._collect(model, test), metric=self.key))
        return {f"{self.key}_{k}": v for k, v in attack_summary(f, t).items()}


@register_metric("mia_confidence")
class MIAConfidenceMetric(_ThresholdMIA):
    """Confidence-threshold membership inference of forget vs test (Song & Mittal, USENIX Security 2021).

    Keys ``mia_confidence_auc``, ``_balanced_accuracy``, ``_advantage``, ``_tpr_at_fpr_0.001``/``0.01``.
    """

    key = "mia_confidence"

    def _score(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return true_label_confidence(logits, labels)


@register_metric("mia_mentropy")
class MIAModifiedEntropyMetric(_ThresholdMIA):
    """Modified-entropy membership inference of forget vs test (Song & Mittal, USENIX Security 2021, eq. 4).

    Keys ``mia_mentropy_auc``, ``_balanced_accuracy``, ``_advantage``, ``_tpr_at_fpr_0.001``/``0.01``.
    """

    key = "mia_mentropy"

    def _score(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return -modified_entropy(logits, labels)
