"""Model size and speed-up over retraining.

- ``model_size``: parameter count, non-zero parameters (what sparsity-inducing methods such as ``l1_sparse``
  and pruning change; Jia et al., "Model Sparsity Can Simplify Machine Unlearning", NeurIPS 2023) and the
  bytes of parameters + buffers.
- ``speedup``: ``T_reference / T_method``, the wall-clock ratio of retraining (or any reference procedure) to
  the unlearning call — the run-time-efficiency comparison of SalUn (Fan et al., ICLR 2024) and of most
  unlearning papers. Each time is the minimum over ``repeats`` runs (``time.perf_counter``), the usual
  estimator that is least disturbed by other load (``timeit``'s advice).
"""

from __future__ import annotations

import time
from typing import Any, Callable

import torch

from ..errors import ErasusTypeError, InvalidInputError
from ..registry import register_metric
from .base import Metric

__all__ = ["model_size", "ModelSizeMetric", "SpeedupMetric"]

_MB = 2.0**20


def model_size(model: torch.nn.Module) -> dict[str, float]:
    """``parameters``, ``nonzero_parameters`` (of all parameters) and ``size_mb`` (parameters + buffers)."""
    if not isinstance(model, torch.nn.Module):
        raise ErasusTypeError(f"model_size needs an nn.Module, got {type(model).__name__}")
    params = list(model.parameters())
    count = sum(p.numel() for p in params)
    nonzero = sum(int(torch.count_nonzero(p.detach())) for p in params)
    nbytes = sum(t.numel() * t.element_size() for t in [*params, *model.buffers()])
    return {"parameters": float(count), "nonzero_parameters": float(nonzero), "size_mb": nbytes / _MB}


@register_metric("model_size")
class ModelSizeMetric(Metric):
    """Parameter count, non-zero parameters and size in MiB of the model (standard definitions; sparsity as in
    Jia et al., NeurIPS 2023); keys ``model_parameters``, ``model_nonzero_parameters``, ``model_size_mb``."""

    inputs = ()
    group = "efficiency"

    def compute(self, model: torch.nn.Module) -> dict[str, float]:
        return {f"model_{k}": v for k, v in model_size(model).items()}


@register_metric("speedup")
class SpeedupMetric(Metric):
    """Speed-up over a reference procedure: ``T_reference / T_fn`` (run-time efficiency, e.g. SalUn, Fan et al.
    ICLR 2024). ``SpeedupMetric(fn=unlearn, reference_fn=retrain, repeats=1).compute(model)`` calls both on the
    model; keys ``speedup``, ``time_s``, ``reference_time_s`` (each the minimum over ``repeats`` runs)."""

    inputs = ()
    group = "efficiency"

    def __init__(self, *, fn: Callable[[torch.nn.Module], Any], reference_fn: Callable[[torch.nn.Module], Any],
                 repeats: int = 1, **options: Any) -> None:
        super().__init__(**options)
        if not callable(fn) or not callable(reference_fn):
            raise ErasusTypeError("speedup needs callables fn= and reference_fn= (each takes the model)")
        if not isinstance(repeats, int) or repeats < 1:
            raise InvalidInputError(f"repeats must be a positive int, got {repeats!r}")
        self.fn, self.reference_fn, self.repeats = fn, reference_fn, repeats

    def _time(self, fn: Callable[[torch.nn.Module], Any], model: torch.nn.Module) -> float:
        best = float("inf")
        for _ in range(self.repeats):
            t0 = time.perf_counter()
            fn(model)
            best = min(best, time.perf_counter() - t0)
        return best

    def compute(self, model: torch.nn.Module) -> dict[str, float]:
        t = self._time(self.fn, model)
        ref = self._time(self.reference_fn, model)
        if t <= 0:
            raise InvalidInputError("fn took no measurable time; time a larger piece of work")
        return {"speedup": ref / t, "time_s": t, "reference_time_s": ref}
