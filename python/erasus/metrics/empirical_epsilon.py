"""An empirical lower bound on epsilon from a membership attack (Jagielski, Ullman & Oprea, NeurIPS 2020).

An ``(epsilon, delta)``-DP mechanism forces every test between "member" and "non-member" to satisfy
``TPR <= e^eps FPR + delta`` and ``TNR <= e^eps FNR + delta``. So any attack threshold gives

    ``eps >= max( log((TPR_lo - delta) / FPR_hi), log((TNR_lo - delta) / FNR_hi) )``

with Clopper-Pearson bounds (``TPR_lo``, ``FPR_hi`` one-sided at ``alpha / 2`` each, so the pair holds with
probability ``>= 1 - alpha``), as Jagielski et al. do. The bound reported is the maximum over the attack's
thresholds; picking the threshold on the same samples makes that maximum optimistic (pass scores from a
held-out run to pick it, or read it as an audit estimate). Steinke, Nasr & Jagielski (NeurIPS 2023)'s
one-run auditing, which randomises the inclusion of canaries during training, is not implemented here.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import beta

from ..errors import InvalidInputError
from ..registry import register_metric
from .attack import as_scores
from .base import Metric

__all__ = ["empirical_epsilon", "clopper_pearson", "EmpiricalEpsilonMetric"]


def clopper_pearson(k: np.ndarray, n: int, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Exact binomial ``(lower, upper)`` bounds, each one-sided at ``alpha / 2`` (Clopper & Pearson 1934)."""
    k = np.asarray(k, dtype=np.float64)
    lo = np.where(k > 0, beta.ppf(alpha / 2, np.maximum(k, 1), n - k + 1), 0.0)
    hi = np.where(k < n, beta.ppf(1 - alpha / 2, k + 1, np.maximum(n - k, 1)), 1.0)
    return lo, hi


def empirical_epsilon(member_scores: Any, nonmember_scores: Any, *, delta: float = 0.0, alpha: float = 0.05
                      ) -> dict[str, float]:
    """The largest epsilon lower bound over thresholds of an attack (score larger = member).

    Returns ``epsilon_lb`` (>= 0), ``threshold`` where it is reached, and the point estimates ``tpr``/``fpr``
    there.
    """
    m = as_scores(member_scores, what="member scores")
    n = as_scores(nonmember_scores, what="non-member scores")
    if not 0 <= delta < 1 or not 0 < alpha < 1:
        raise InvalidInputError(f"need 0 <= delta < 1 and 0 < alpha < 1, got delta={delta}, alpha={alpha}")
    thresholds = np.unique(np.concatenate([m, n]))
    ms, ns = np.sort(m), np.sort(n)
    tp = m.size - np.searchsorted(ms, thresholds, side="left")  # members with score >= t
    fp = n.size - np.searchsorted(ns, thresholds, side="left")
    tpr_lo, tpr_hi = clopper_pearson(tp, m.size, alpha)
    fpr_lo, fpr_hi = clopper_pearson(fp, n.size, alpha)
    with np.errstate(divide="ignore", invalid="ignore"):
        e1 = np.log((tpr_lo - delta) / fpr_hi)
        e2 = np.log(((1 - fpr_hi) - delta) / (1 - tpr_lo))
    eps = np.nan_to_num(np.maximum(e1, e2), nan=-np.inf, posinf=np.inf)
    best = int(np.argmax(eps))
    # finite: FPR_hi > 0 and TPR_lo < 1 for any finite sample
    return {"epsilon_lb": float(max(eps[best], 0.0)), "threshold": float(thresholds[best]), "tpr": float(tp[best] / m.size),
            "fpr": float(fp[best] / n.size)}


@register_metric("empirical_epsilon")
class EmpiricalEpsilonMetric(Metric):
    """Empirical epsilon lower bound of a loss-threshold attack, forget (members) vs test (Jagielski et al. 2020).

    Score = minus the per-sample loss. Keys ``empirical_epsilon`` (the bound), ``empirical_epsilon_tpr``,
    ``empirical_epsilon_fpr`` (at the threshold that reaches it). ``delta`` (default 0) and ``alpha`` (the
    Clopper-Pearson level, default 0.05) as in :func:`empirical_epsilon`. A model that forgot its forget set
    scores ~0; a larger bound is evidence of membership leakage.
    """

    inputs = ("forget", "test")
    group = "privacy"

    def __init__(self, *, delta: float = 0.0, alpha: float = 0.05, **options: Any) -> None:
        super().__init__(**options)
        if not 0 <= delta < 1 or not 0 < alpha < 1:
            raise InvalidInputError(f"need 0 <= delta < 1 and 0 < alpha < 1, got delta={delta}, alpha={alpha}")
        self.delta, self.alpha = float(delta), float(alpha)

    def compute(self, model: Any, forget: Any, test: Any) -> dict[str, float]:
        f = self._collect(model, forget, logits=False, losses=True).losses
        t = self._collect(model, test, logits=False, losses=True).losses
        r = empirical_epsilon(-f, -t, delta=self.delta, alpha=self.alpha)
        return {"empirical_epsilon": r["epsilon_lb"], "empirical_epsilon_tpr": r["tpr"],
                "empirical_epsilon_fpr": r["fpr"]}
