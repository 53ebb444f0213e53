"""Streisand-effect check: does the unlearned model *stand out* on the forget set, relative to the oracle?

Golatkar, Achille & Soatto (CVPR 2020, "Eternal Sunshine of the Spotless Net") warn that forgetting too
much is itself a tell — a model whose loss on the forget set is higher than a retrained model's reveals
which samples were removed (a Streisand effect). The check compares the model's per-sample forget losses
with the oracle's on the same samples:

- ``streisand_loss_gap`` = mean forget loss of the model - of the oracle (> 0: the model over-forgets);
- ``streisand_ks``, ``streisand_p_value``: two-sample Kolmogorov-Smirnov test of the two loss samples
  (scipy ``ks_2samp``, two-sided);
- ``streisand_auc`` / ``streisand_reference_auc``: ROC AUC of "forget has higher loss than test" under the
  model and under the oracle — how far the forget set stands out from unseen data in each;
- ``streisand_stands_out`` = 1.0 when ``p_value < alpha`` and the gap is positive.
"""

from __future__ import annotations

from typing import Any

from scipy.stats import ks_2samp

from ..errors import InvalidInputError
from ..registry import register_metric
from .attack import as_scores, attack_summary
from .base import Metric

__all__ = ["streisand_check", "StreisandMetric"]


def streisand_check(model_forget_losses: Any, reference_forget_losses: Any, model_test_losses: Any,
                    reference_test_losses: Any, *, alpha: float = 0.05) -> dict[str, float]:
    """The Streisand statistics from per-sample losses (see the module docstring)."""
    if not 0 < alpha < 1:
        raise InvalidInputError(f"alpha must be in (0, 1), got {alpha}")
    mf = as_scores(model_forget_losses, what="model forget losses")
    rf = as_scores(reference_forget_losses, what="reference forget losses")
    mt = as_scores(model_test_losses, what="model test losses")
    rt = as_scores(reference_test_losses, what="reference test losses")
    ks = ks_2samp(mf, rf)
    gap = float(mf.mean() - rf.mean())
    return {
        "streisand_loss_gap": gap,
        "streisand_ks": float(ks.statistic),
        "streisand_p_value": float(ks.pvalue),
        "streisand_auc": attack_summary(mf, mt)["auc"],
        "streisand_reference_auc": attack_summary(rf, rt)["auc"],
        "streisand_stands_out": float(ks.pvalue < alpha and gap > 0),
    }


@register_metric("streisand")
class StreisandMetric(Metric):
    """Streisand-effect check of the unlearned model against the retrained oracle (Golatkar et al., CVPR 2020).

    ``compute(model, forget, test, reference_model=oracle)``; keys ``streisand_loss_gap``, ``streisand_ks``,
    ``streisand_p_value``, ``streisand_auc``, ``streisand_reference_auc``, ``streisand_stands_out``.
    """

    inputs = ("forget", "test")
    needs_reference = True
    group = "privacy"

    def __init__(self, *, alpha: float = 0.05, **options: Any) -> None:
        super().__init__(**options)
        if not 0 < alpha < 1:
            raise InvalidInputError(f"alpha must be in (0, 1), got {alpha}")
        self.alpha = float(alpha)

    def compute(self, model: Any, forget: Any, test: Any, *, reference_model: Any) -> dict[str, float]:
        if reference_model is None:
            raise InvalidInputError("streisand compares with the retrained oracle: pass reference_model=")

        def losses(m: Any, data: Any) -> Any:
            return self._collect(m, data, logits=False, losses=True).losses

        return streisand_check(losses(model, forget), losses(reference_model, forget), losses(model, test),
                               losses(reference_model, test), alpha=self.alpha)
