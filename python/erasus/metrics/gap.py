"""Average gap to the retrained model, "Avg. Gap" of SalUn's tables (Fan et al., ICLR 2024).

SalUn reports ``mean(|UA - UA_rt|, |RA - RA_rt|, |TA - TA_rt|, |MIA - MIA_rt|)``: unlearning accuracy
``UA = 1 - forget accuracy``, retain accuracy, test accuracy and MIA-Efficacy, each against the model
retrained without the forget set (``|UA - UA_rt| = |forget_acc - forget_acc_rt|``). Values here are
fractions; multiply by 100 for the paper's percentage points.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ..errors import InvalidInputError
from ..registry import register_metric
from .accuracy import AccuracyMetric
from .base import Metric
from .mia_efficacy import MIAEfficacyMetric

__all__ = ["GAP_KEYS", "avg_gap", "AvgGapMetric"]

GAP_KEYS = ("forget_accuracy", "retain_accuracy", "test_accuracy", "mia_efficacy")


def avg_gap(values: Mapping[str, float], reference: Mapping[str, float], *, keys: Sequence[str] = GAP_KEYS) -> float:
    """``mean_k |values[k] - reference[k]|`` over ``keys`` (SalUn's Avg. Gap with the default keys)."""
    if not keys:
        raise InvalidInputError("avg_gap needs at least one key")
    missing = [k for k in keys if k not in values or k not in reference]
    if missing:
        raise InvalidInputError(f"avg_gap needs {missing} in both the model's and the reference's results")
    gaps = np.array([abs(float(values[k]) - float(reference[k])) for k in keys])
    if not np.isfinite(gaps).all():
        raise InvalidInputError(f"avg_gap got non-finite values for {list(keys)}")
    return float(gaps.mean())


@register_metric("avg_gap")
class AvgGapMetric(Metric):
    """SalUn's Avg. Gap: forget/retain/test accuracy and MIA-Efficacy of the model vs the retrained model.

    ``compute(model, forget, retain, test, reference_model=...)`` -> ``avg_gap`` and ``gap_{key}`` per component.
    """

    group = "forgetting"

    inputs = ("forget", "retain", "test")
    needs_reference = True

    def __init__(self, *, seed: int = 0, **options: Any) -> None:
        super().__init__(**options)
        self.seed = int(seed)
        self._options = options

    def _components(self, model: torch.nn.Module, forget: Any, retain: Any, test: Any) -> dict[str, float]:
        out = AccuracyMetric(**self._options).compute(model, forget, retain, test)
        out.update(MIAEfficacyMetric(seed=self.seed, **self._options).compute(model, forget, retain, test))
        return out

    def compute(self, model: torch.nn.Module, forget: Any, retain: Any, test: Any, *,
                reference_model: torch.nn.Module) -> dict[str, float]:
        if reference_model is None:
            raise InvalidInputError("avg_gap compares with the retrained model: pass reference_model=")
        mine = self._components(model, forget, retain, test)
        ref = self._components(reference_model, forget, retain, test)
        out = {f"gap_{k}": abs(mine[k] - ref[k]) for k in GAP_KEYS}
        out["avg_gap"] = avg_gap(mine, ref)
        return out
