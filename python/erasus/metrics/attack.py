"""Shared scoring of a membership-inference attack: ROC AUC, balanced accuracy and TPR at low FPR.

Low-FPR true-positive rates follow Carlini et al. ("Membership Inference Attacks From First Principles",
IEEE S&P 2022): the best TPR any threshold reaches while its FPR stays at or under the target.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

from ..errors import InvalidInputError, NonFiniteError

__all__ = ["attack_summary", "as_scores"]

DEFAULT_FPRS = (1e-3, 1e-2)


def as_scores(x: Any, *, what: str) -> np.ndarray:
    """A finite float64 1-D array from a tensor or array, or a clear error naming ``what``."""
    arr = np.asarray(x.detach().cpu() if hasattr(x, "detach") else x, dtype=np.float64).reshape(-1)
    if arr.size == 0:
        raise InvalidInputError(f"{what} is empty; a membership attack needs at least one sample of each kind")
    if not np.isfinite(arr).all():
        raise NonFiniteError(f"{what} contains NaN or infinity")
    return arr


def attack_summary(member_scores: Any, nonmember_scores: Any, *, fprs: Sequence[float] = DEFAULT_FPRS
                   ) -> dict[str, float]:
    """Score an attack whose output is larger for members.

    Returns ``auc`` (sklearn ``roc_auc_score``), ``balanced_accuracy`` = max over thresholds of
    (TPR + 1 - FPR) / 2, ``advantage`` = max(TPR - FPR) (Yeom et al.'s membership advantage) and
    ``tpr_at_fpr_{f:g}`` for each target FPR ``f``.
    """
    m = as_scores(member_scores, what="member scores")
    n = as_scores(nonmember_scores, what="non-member scores")
    y = np.concatenate([np.ones(m.size), np.zeros(n.size)])
    s = np.concatenate([m, n])
    fpr, tpr, _ = roc_curve(y, s)
    out = {
        "auc": float(roc_auc_score(y, s)),
        "balanced_accuracy": float(np.max((tpr + 1.0 - fpr) / 2.0)),
        "advantage": float(np.max(tpr - fpr)),
    }
    for f in fprs:
        if not 0.0 <= f <= 1.0:
            raise InvalidInputError(f"target FPRs must lie in [0, 1], got {f}")
        out[f"tpr_at_fpr_{f:g}"] = float(tpr[fpr <= f].max())
    return out
