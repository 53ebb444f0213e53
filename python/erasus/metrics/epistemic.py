"""Unlearning efficacy via epistemic uncertainty (Becker & Liebig, "Evaluating Machine Unlearning via
Epistemic Uncertainty", arXiv:2208.10836, 2022).

The information a model holds about a data set ``D`` is measured by the trace of the (empirical) Fisher
information ``i(w; D) = tr F(w; D)``, ``F = (1/|D|) sum_{x in D} grad l(x) grad l(x)^T``, so
``i = (1/|D|) sum_x ||grad_w l(x)||^2``; the efficacy is ``1 / i`` (``inf`` when ``i = 0``). Less information
about the forget set — higher efficacy — means more was forgotten. Gradients are per sample, over every
trainable parameter, of the task loss.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from tqdm.auto import tqdm

from ..errors import InvalidInputError
from ..registry import register_metric
from .base import Metric
from .outputs import evaluating, model_device, resolve_task

__all__ = ["fisher_trace", "EpistemicUncertaintyMetric"]


def fisher_trace(model: torch.nn.Module, data: Any, *, task: Any = None, device: Any = None,
                 progress: bool = False) -> float:
    """``(1/|D|) sum_x ||grad_w l(x)||^2`` over ``data`` (one backward pass per sample, eval mode, float64 sum)."""
    from ..data import as_dataset, collate_of

    ds = as_dataset(data)
    if len(ds) == 0:  # type: ignore[arg-type]
        raise InvalidInputError("fisher_trace needs a non-empty data set")
    task = resolve_task(model, data, task)
    dev = model_device(model, device)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise InvalidInputError("fisher_trace: the model has no trainable parameters")
    loader = torch.utils.data.DataLoader(ds, batch_size=1, shuffle=False, collate_fn=collate_of(data))
    total = 0.0
    with evaluating(model):
        for batch in tqdm(loader, desc="fisher trace", disable=not progress, leave=False):
            batch = task.to_device(tuple(batch) if isinstance(batch, list) else batch, dev)
            grads = torch.autograd.grad(task.loss(model, batch), params)
            total += float(sum((g.double() ** 2).sum() for g in grads))
    value = total / len(ds)  # type: ignore[arg-type]
    if not math.isfinite(value):
        raise InvalidInputError(f"fisher_trace is {value}: the model's gradients on this data are not finite")
    return value


@register_metric("epistemic_uncertainty")
class EpistemicUncertaintyMetric(Metric):
    """Efficacy ``1 / tr F(w; D_f)`` of the forget set (Becker & Liebig 2022); keys ``forget_fisher_trace``
    and ``forget_efficacy`` (higher = less information about the forget set left)."""

    inputs = ("forget",)
    group = "forgetting"

    def __init__(self, *, progress: bool = False, **options: Any) -> None:
        super().__init__(**options)
        self.progress = progress

    def compute(self, model: torch.nn.Module, forget: Any) -> dict[str, float]:
        trace = fisher_trace(model, forget, task=self.task, device=self.device, progress=self.progress)
        return {"forget_fisher_trace": trace, "forget_efficacy": math.inf if trace == 0 else 1.0 / trace}
