"""Tug-of-War (ToW; Zhao, Kurmanji, Barbulescu, Triantafillou & Triantafillou, "What Makes Unlearning Hard and What to Do About It", NeurIPS 2024).

    ``ToW = (1 - |acc_F(u) - acc_F(r)|) (1 - |acc_R(u) - acc_R(r)|) (1 - |acc_T(u) - acc_T(r)|)``

with ``u`` the unlearned model, ``r`` the model retrained without the forget set, and ``F``, ``R``, ``T`` the
forget, retain and test sets (accuracies in [0, 1]). ToW = 1 when every accuracy matches the retrained
model's; any gap on any split pulls it down, so trading retain or test accuracy for forgetting shows.
"""

from __future__ import annotations

from typing import Any

from ..errors import InvalidInputError
from ..registry import register_metric
from .accuracy import topk_accuracy
from .base import Metric
from .outputs import class_outputs

__all__ = ["tug_of_war", "ToWMetric"]


def tug_of_war(unlearned: dict[str, float], retrained: dict[str, float]) -> float:
    """ToW from the two models' ``{"forget", "retain", "test"}`` accuracies (each in [0, 1])."""
    value = 1.0
    for split in ("forget", "retain", "test"):
        if split not in unlearned or split not in retrained:
            raise InvalidInputError(f"tug_of_war needs forget, retain and test accuracies; {split!r} is missing")
        a, b = float(unlearned[split]), float(retrained[split])
        if not (0.0 <= a <= 1.0 and 0.0 <= b <= 1.0):
            raise InvalidInputError(f"accuracies must lie in [0, 1], got {split}: {a}, {b}")
        value *= 1.0 - abs(a - b)
    return value


@register_metric("tow")
class ToWMetric(Metric):
    """Tug-of-War (Zhao et al., NeurIPS 2024): product of (1 - |accuracy gap to the retrained model|) over
    forget, retain and test; key ``tow``. Needs ``reference_model=``."""

    inputs = ("forget", "retain", "test")
    needs_reference = True
    group = "forgetting"

    def compute(self, model: Any, forget: Any, retain: Any, test: Any, *, reference_model: Any) -> dict[str, float]:
        if reference_model is None:
            raise InvalidInputError("tow compares with the retrained model: pass reference_model=")
        splits = {"forget": forget, "retain": retain, "test": test}

        def accs(m: Any) -> dict[str, float]:
            return {s: topk_accuracy(*class_outputs(self._collect(m, d), metric="tow")) for s, d in splits.items()}

        return {"tow": tug_of_war(accs(model), accs(reference_model))}
