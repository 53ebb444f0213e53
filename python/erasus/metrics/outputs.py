"""Collect a model's outputs on a data set through the task adapter, once per (model, data) pair.

Every metric needs the same few things: logits, targets and per-sample losses over a whole split.
:func:`collect_outputs` gathers them in evaluation mode without gradients, in the data's order, and
restores each module's train/eval flag afterwards. Inside :func:`output_cache` (used by
:class:`~erasus.metrics.MetricSuite`) a (model, data) pair is evaluated once and shared by all metrics.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, SequentialSampler

from ..errors import ErasusTypeError, InvalidInputError

__all__ = ["Outputs", "collect_outputs", "output_cache", "evaluating", "model_device", "ordered_loader",
           "resolve_task", "class_outputs"]

_CACHE: contextvars.ContextVar[dict[Any, Any] | None] = contextvars.ContextVar("erasus_metric_cache", default=None)


@dataclasses.dataclass(frozen=True)
class Outputs:
    """A split's outputs, concatenated on the CPU in the data's order.

    Attributes:
        logits: model outputs (classification: ``(N, C)`` float32), or ``None`` when not collected.
        labels: targets from :meth:`Task.labels`, or ``None`` when the family has none (or they vary in shape).
        losses: per-sample losses ``(N,)`` when collected, else ``None``.
    """

    logits: torch.Tensor | None
    labels: torch.Tensor | None
    losses: torch.Tensor | None


def model_device(model: torch.nn.Module, device: Any = None) -> torch.device:
    """``device`` if given, else the device of the model's first parameter (CPU for parameter-free models)."""
    if device is not None:
        return torch.device(device)
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def resolve_task(model: torch.nn.Module, data: Any, task: Any) -> Any:
    from ..tasks import get_task, infer_task

    return infer_task(model, data) if task is None else get_task(task)


def ordered_loader(data: Any, *, batch_size: int) -> DataLoader:
    """A loader that visits ``data`` in its stored order, so two models see the samples aligned.

    A user's shuffling ``DataLoader`` is rebuilt over the same dataset and ``collate_fn`` without shuffling.
    """
    from ..data import as_loader

    if isinstance(data, DataLoader) and not isinstance(data.sampler, SequentialSampler):
        return DataLoader(data.dataset, batch_size=data.batch_size or batch_size, shuffle=False,
                          collate_fn=data.collate_fn)
    return as_loader(data, batch_size=None if isinstance(data, DataLoader) else batch_size)


@contextlib.contextmanager
def evaluating(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Put ``model`` in eval mode for the block and give every submodule its own flag back afterwards."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, flag in flags:
            m.training = flag


@contextlib.contextmanager
def output_cache() -> Iterator[None]:
    """Within the block, :func:`collect_outputs` evaluates each (model, data, task) once.

    The cache holds references to the model and data, so their ``id`` cannot be reused by another object
    while the block runs; models must not change inside the block.
    """
    token = _CACHE.set({}) if _CACHE.get() is None else None
    try:
        yield
    finally:
        if token is not None:
            _CACHE.reset(token)


def collect_outputs(
    model: torch.nn.Module,
    data: Any,
    *,
    task: Any = None,
    batch_size: int = 256,
    device: Any = None,
    logits: bool = True,
    losses: bool = False,
    cache: bool = True,
) -> Outputs:
    """Logits (``logits=True``), labels and per-sample losses (``losses=True``) of ``model`` on all of ``data``.

    Loss-only metrics pass ``logits=False`` so that a causal LM's (N, T, V) logits are never kept.
    ``cache=False`` bypasses :func:`output_cache` (for a model that changes between calls).
    """
    if not isinstance(model, torch.nn.Module):
        raise ErasusTypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if data is None:
        raise InvalidInputError("no data given to evaluate the model on")
    task = resolve_task(model, data, task)
    store = _CACHE.get() if cache else None
    # get_task builds a fresh adapter per call: key on its class and options, not its identity
    key = (id(model), id(data), type(task), repr(sorted(vars(task).items())))
    if store is not None and key in store:
        hit: Outputs = store[key][0]
        if (hit.logits is not None or not logits) and (hit.losses is not None or not losses):
            return hit
        # one pass that also refills what the cached entry had, so the entry only ever grows
        logits, losses = logits or hit.logits is not None, losses or hit.losses is not None
    dev = model_device(model, device)
    logit_list: list[torch.Tensor] = []
    label_list: list[torch.Tensor] = []
    loss_list: list[torch.Tensor] = []
    has_labels = True
    n = 0
    # iterating a DataLoader draws a seed from the global RNG; evaluation must not shift the caller's stream
    with evaluating(model), torch.no_grad(), torch.random.fork_rng(devices=[]):
        for batch in ordered_loader(data, batch_size=batch_size):
            batch = task.to_device(batch, dev)
            n += task.batch_size(batch)
            if logits:
                logit_list.append(task.outputs(model, batch).detach().float().cpu())
            if has_labels:
                try:
                    label_list.append(task.labels(batch).detach().cpu())
                except InvalidInputError:
                    has_labels = False
            if losses:
                loss_list.append(task.per_sample_loss(model, batch).detach().float().cpu().reshape(-1))
    if n == 0:
        raise InvalidInputError("the data set is empty; metrics need at least one sample")
    if logits and len({tuple(t.shape[1:]) for t in logit_list}) != 1:
        shapes = sorted({tuple(t.shape[1:]) for t in logit_list})
        raise InvalidInputError(
            f"the model's outputs change shape between batches ({shapes}); this metric needs per-sample "
            "outputs of one shape (e.g. classification logits (N, C))"
        )
    label_shapes = {tuple(t.shape[1:]) for t in label_list}
    out = Outputs(
        logits=torch.cat(logit_list) if logits else None,
        labels=torch.cat(label_list) if has_labels and len(label_shapes) == 1 else None,
        losses=torch.cat(loss_list) if losses else None,
    )
    if store is not None:
        store[key] = (out, model, data, task)
    return out


def class_outputs(outputs: Outputs, *, metric: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logits (N, C), labels (N,))`` of a classification-style split, or a clear error naming ``metric``."""
    logits, labels = outputs.logits, outputs.labels
    if logits is None:
        raise InvalidInputError(f"{metric} needs logits; collect them with logits=True")
    if logits.ndim != 2 or labels is None or labels.shape != (logits.shape[0],):
        raise InvalidInputError(
            f"{metric} needs class logits (N, C) and labels (N,); this task gives outputs "
            f"{tuple(logits.shape)} and labels {None if labels is None else tuple(labels.shape)}"
        )
    return logits, labels
