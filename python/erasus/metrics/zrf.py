"""Zero Retrain Forgetting score (Chundawat et al., "Can Bad Teaching Induce Forgetting?", AAAI 2023).

``ZRF = 1 - (1/n_f) sum_i JS(M(x_i), T_d(x_i))`` over the forget set, where ``M`` is the unlearned model and
``T_d`` a randomly initialised ("incompetent") model of the same architecture; JS in base 2, so ZRF is in
[0, 1]. ZRF near 1 means the model answers on the forget set like a model that knows nothing about it; it
needs no retrained model.
"""

from __future__ import annotations

from typing import Any

import torch

from ..errors import ErasusTypeError
from ..registry import register_metric
from .base import Metric
from .divergence import js_divergence

__all__ = ["zrf_score", "ZRFMetric"]


def zrf_score(logits: Any, incompetent_logits: Any) -> float:
    """``1 - mean_i JS_2(softmax(z_i), softmax(z'_i))`` for the model's and the incompetent teacher's logits."""
    p = torch.softmax(torch.as_tensor(logits).double(), dim=-1)
    q = torch.softmax(torch.as_tensor(incompetent_logits).double(), dim=-1)
    return float(1.0 - js_divergence(p, q).mean())


@register_metric("zrf")
class ZRFMetric(Metric):
    """ZRF score on the forget set: ``compute(model, forget) -> {"zrf": value}``.

    The incompetent teacher is ``incompetent_model`` when given, else a random re-initialisation of the model's
    architecture (every layer's ``reset_parameters()`` under ``seed``), as in the paper.
    """

    group = "forgetting"

    inputs = ("forget",)

    def __init__(self, *, incompetent_model: torch.nn.Module | None = None, seed: int = 0, **options: Any) -> None:
        super().__init__(**options)
        if incompetent_model is not None and not isinstance(incompetent_model, torch.nn.Module):
            raise ErasusTypeError(
                f"incompetent_model must be a torch.nn.Module, got {type(incompetent_model).__name__}")
        self.incompetent_model = incompetent_model
        self.seed = int(seed)

    def compute(self, model: torch.nn.Module, forget: Any) -> dict[str, float]:
        from ..strategies.base import reinitialize

        teacher = self.incompetent_model
        if teacher is None:
            teacher = reinitialize(model, seed=self.seed)
        return {"zrf": zrf_score(self._collect(model, forget).logits, self._collect(teacher, forget).logits)}
