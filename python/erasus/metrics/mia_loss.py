"""Loss-threshold membership inference (Yeom et al., "Privacy Risk in Machine Learning", CSF 2018)."""

from __future__ import annotations

from typing import Any

import torch

from ..registry import register_metric
from .attack import attack_summary
from .base import Metric

__all__ = ["loss_threshold_attack", "LossMIAMetric"]


def loss_threshold_attack(member_losses: Any, nonmember_losses: Any) -> dict[str, float]:
    """Yeom et al.'s attack: predict "member" when ``loss(x, y) <= tau``; swept over every ``tau``.

    The attack score is ``-loss``; returns :func:`attack_summary` of it (AUC, best balanced accuracy,
    membership advantage max(TPR - FPR), TPR at 0.1% / 1% FPR).
    """
    neg = [-torch.as_tensor(v, dtype=torch.float64) for v in (member_losses, nonmember_losses)]
    return attack_summary(neg[0], neg[1])


@register_metric("mia_loss")
class LossMIAMetric(Metric):
    """Loss-threshold MIA of forget (members of the original training set) against test (non-members).

    Keys ``mia_loss_auc``, ``mia_loss_balanced_accuracy``, ``mia_loss_advantage``, ``mia_loss_tpr_at_fpr_*``.
    An unlearned model whose forget set is indistinguishable from unseen data scores AUC ~= 0.5 (as the
    retrained model does when forget and test come from one distribution). Works for any task with a loss.
    """

    group = "privacy"

    inputs = ("forget", "test")

    def compute(self, model: torch.nn.Module, forget: Any, test: Any) -> dict[str, float]:
        members = self._collect(model, forget, logits=False, losses=True).losses
        nonmembers = self._collect(model, test, logits=False, losses=True).losses
        return {f"mia_loss_{k}": v for k, v in loss_threshold_attack(members, nonmembers).items()}
