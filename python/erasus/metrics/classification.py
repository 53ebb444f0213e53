"""Classification quality beyond accuracy: macro-F1, balanced accuracy, Cohen's kappa, Matthews correlation
and one-vs-rest ROC AUC, each from the confusion matrix (float64), per split.

Definitions (``M`` the ``C x C`` confusion matrix, rows = true class, columns = predicted class):

- macro-F1: mean over classes of ``2 TP_c / (2 TP_c + FP_c + FN_c)`` (van Rijsbergen 1979; classes with
  no true and no predicted sample count as 0, as scikit-learn's ``zero_division=0``);
- balanced accuracy: mean per-class recall over the classes present (Brodersen et al., ICPR 2010);
- Cohen's kappa: ``(p_o - p_e) / (1 - p_e)`` (Cohen 1960);
- Matthews correlation, multi-class: ``(c s - sum_k p_k t_k) / sqrt((s^2 - sum p_k^2)(s^2 - sum t_k^2))``
  (Matthews 1975; Gorodkin 2004's R_K);
- macro one-vs-rest ROC AUC: mean over classes present of the Mann-Whitney AUC of ``softmax_c`` for class
  ``c`` vs the rest (Hand & Till 2001 use one-vs-one; this is the one-vs-rest macro average).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from scipy.stats import rankdata

from ..errors import InvalidInputError
from ..registry import register_metric
from .base import SplitMetric

__all__ = [
    "confusion_matrix",
    "macro_f1",
    "balanced_accuracy",
    "cohen_kappa",
    "matthews_corrcoef",
    "macro_auroc",
    "F1Metric",
    "BalancedAccuracyMetric",
    "CohenKappaMetric",
    "MCCMetric",
    "AUROCMetric",
    "SplitMetric",
]


def _check(logits: Any, labels: Any, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    logits, labels = torch.as_tensor(logits), torch.as_tensor(labels).long()
    if logits.ndim != 2 or labels.shape != (logits.shape[0],) or logits.shape[0] == 0 or logits.shape[1] < 2:
        raise InvalidInputError(f"{what} needs logits (N, C >= 2) and labels (N,) with N > 0, got "
                                f"{tuple(logits.shape)} and {tuple(labels.shape)}")
    if not torch.isfinite(logits).all():
        raise InvalidInputError(f"{what}: logits contain NaN or infinity")
    if labels.min() < 0 or labels.max() >= logits.shape[1]:
        raise InvalidInputError(f"{what}: labels must lie in [0, {logits.shape[1] - 1}] (the model's classes), "
                                f"got range [{int(labels.min())}, {int(labels.max())}]")
    return logits, labels.to(logits.device)


def confusion_matrix(logits: Any, labels: Any) -> np.ndarray:
    """``M[i, j]`` = number of samples of true class ``i`` predicted as ``j`` (argmax), float64 ``(C, C)``."""
    logits, labels = _check(logits, labels, "confusion_matrix")
    c = logits.shape[1]
    pred = logits.argmax(1)
    return np.bincount((labels * c + pred).cpu().numpy(), minlength=c * c).reshape(c, c).astype(np.float64)


def macro_f1(logits: Any, labels: Any) -> float:
    """Mean over the classes present in labels or predictions of ``2 TP / (2 TP + FP + FN)``."""
    m = confusion_matrix(logits, labels)
    tp = np.diag(m)
    fp, fn = m.sum(0) - tp, m.sum(1) - tp
    seen = (m.sum(0) + m.sum(1)) > 0
    return float((2 * tp[seen] / (2 * tp[seen] + fp[seen] + fn[seen])).mean())


def balanced_accuracy(logits: Any, labels: Any) -> float:
    """Mean recall ``TP_c / (TP_c + FN_c)`` over the classes present in ``labels``."""
    m = confusion_matrix(logits, labels)
    support = m.sum(1)
    present = support > 0
    return float((np.diag(m)[present] / support[present]).mean())


def cohen_kappa(logits: Any, labels: Any) -> float:
    """``(p_o - p_e) / (1 - p_e)``: agreement of prediction and label beyond chance (1 when ``p_e = 1``)."""
    m = confusion_matrix(logits, labels)
    n = m.sum()
    p_o = np.trace(m) / n
    p_e = float((m.sum(0) * m.sum(1)).sum() / n**2)
    return 1.0 if p_e == 1.0 else float((p_o - p_e) / (1 - p_e))


def matthews_corrcoef(logits: Any, labels: Any) -> float:
    """Multi-class Matthews correlation from the confusion matrix (0 when a marginal is constant)."""
    m = confusion_matrix(logits, labels)
    s, c = m.sum(), np.trace(m)
    p, t = m.sum(0), m.sum(1)
    den = np.sqrt((s**2 - (p**2).sum()) * (s**2 - (t**2).sum()))
    return 0.0 if den == 0 else float((c * s - (p * t).sum()) / den)


def macro_auroc(logits: Any, labels: Any) -> float:
    """Macro one-vs-rest ROC AUC of the softmax scores (Mann-Whitney U with mid-ranks for ties)."""
    logits, labels = _check(logits, labels, "macro_auroc")
    probs = torch.softmax(logits.double(), 1).cpu().numpy()
    y = labels.cpu().numpy()
    aucs = []
    for k in range(probs.shape[1]):
        pos = y == k
        n_pos, n_neg = int(pos.sum()), int((~pos).sum())
        if n_pos == 0 or n_neg == 0:
            continue
        ranks = rankdata(probs[:, k])
        aucs.append((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
    if not aucs:
        raise InvalidInputError("macro_auroc needs at least two classes present in labels")
    return float(np.mean(aucs))


@register_metric("f1")
class F1Metric(SplitMetric):
    """Macro-averaged F1 of a classifier on each split (van Rijsbergen 1979); keys ``{split}_f1``."""

    key, fn = "f1", staticmethod(macro_f1)


@register_metric("balanced_accuracy")
class BalancedAccuracyMetric(SplitMetric):
    """Balanced accuracy, the mean per-class recall (Brodersen et al., ICPR 2010); keys ``{split}_balanced_accuracy``."""

    key, fn = "balanced_accuracy", staticmethod(balanced_accuracy)


@register_metric("cohen_kappa")
class CohenKappaMetric(SplitMetric):
    """Cohen's kappa (Cohen 1960) of prediction vs label on each split; keys ``{split}_cohen_kappa``."""

    key, fn = "cohen_kappa", staticmethod(cohen_kappa)


@register_metric("mcc")
class MCCMetric(SplitMetric):
    """Multi-class Matthews correlation coefficient (Matthews 1975; Gorodkin 2004); keys ``{split}_mcc``."""

    key, fn = "mcc", staticmethod(matthews_corrcoef)


@register_metric("auroc")
class AUROCMetric(SplitMetric):
    """Macro one-vs-rest ROC AUC of the softmax scores (Hanley & McNeil 1982's U statistic); keys ``{split}_auroc``."""

    key, fn = "auroc", staticmethod(macro_auroc)
