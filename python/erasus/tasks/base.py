"""The task-adapter protocol: how a strategy or metric gets a loss, per-sample losses and outputs from a batch.

Strategies and metrics are written once against :class:`Task`, so gradient ascent, SCRUB or a
membership-inference metric serve a classifier, a causal LM and a CLIP-style model alike. An adapter
owns the batch layout of its family: ``(x, y)`` tuples for classification, dicts with ``input_ids``/
``attention_mask``/``labels`` (``-100`` on prompt tokens) for causal LMs, ``(pixel_values, input_ids, ...)``
pairs for contrastive models.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from typing import Any, Callable, ClassVar, TypeVar, Union

import torch

from ..errors import ErasusTypeError, InvalidInputError, RegistryError

__all__ = ["Batch", "Task", "register_task", "get_task", "list_tasks", "move_to_device", "batch_size_of"]

Batch = Union[torch.Tensor, Sequence[Any], Mapping[str, Any]]

_TASKS: dict[str, type["Task"]] = {}
T = TypeVar("T", bound=type)


def register_task(name: str) -> Callable[[T], T]:
    """Register a :class:`Task` subclass under ``name`` (refuses duplicates)."""

    def decorator(cls: T) -> T:
        if name in _TASKS:
            raise RegistryError(f"task {name!r} is already registered (by {_TASKS[name]!r}); pick another name")
        _TASKS[name] = cls  # type: ignore[assignment]
        return cls

    return decorator


def list_tasks() -> list[str]:
    return sorted(_TASKS)


def get_task(name_or_task: "str | Task | type[Task]", **options: Any) -> "Task":
    """Return a task adapter: a :class:`Task` instance as is, a subclass instantiated, or a registered name."""
    if isinstance(name_or_task, Task):
        return name_or_task
    if isinstance(name_or_task, type) and issubclass(name_or_task, Task):
        return name_or_task(**options)
    if isinstance(name_or_task, str):
        try:
            return _TASKS[name_or_task](**options)
        except KeyError:
            known = ", ".join(sorted(_TASKS)) or "(none)"
            raise RegistryError(f"unknown task {name_or_task!r}; known tasks: {known}") from None
    raise ErasusTypeError(
        f"task must be a registered name, a Task instance or a Task subclass, got {type(name_or_task).__name__}"
    )


def move_to_device(batch: Any, device: torch.device | str | None) -> Any:
    """Move every tensor inside a (nested) tuple/list/dict batch to ``device``; other leaves pass through."""
    if device is None:
        return batch
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        moved = {k: move_to_device(v, device) for k, v in batch.items()}
        return type(batch)(moved) if isinstance(batch, dict) else moved
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # namedtuple
        return type(batch)(*(move_to_device(v, device) for v in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to_device(v, device) for v in batch)
    return batch


def batch_size_of(batch: Any) -> int:
    """Leading dimension of the first tensor found in ``batch``."""
    if isinstance(batch, torch.Tensor):
        if batch.ndim == 0:
            raise InvalidInputError("a batch tensor must have a leading batch dimension, got a 0-d tensor")
        return int(batch.shape[0])
    values = batch.values() if isinstance(batch, Mapping) else batch if isinstance(batch, (list, tuple)) else ()
    for v in values:
        try:
            return batch_size_of(v)
        except InvalidInputError:
            continue
    raise InvalidInputError(f"cannot find a batch tensor in a batch of type {type(batch).__name__}")


class Task(abc.ABC):
    """Adapter between a model family and the strategies/metrics.

    Subclasses implement :meth:`outputs` and :meth:`per_sample_loss`; those that have per-sample targets
    (classification) override :meth:`labels`/:meth:`with_labels`.
    """

    name: ClassVar[str] = "task"

    def to_device(self, batch: Batch, device: torch.device | str | None) -> Batch:
        """The same batch with every tensor on ``device``."""
        return move_to_device(batch, device)

    def batch_size(self, batch: Batch) -> int:
        return batch_size_of(batch)

    @abc.abstractmethod
    def outputs(self, model: torch.nn.Module, batch: Batch) -> torch.Tensor:
        """Model outputs for the batch (classification: logits (B, C); causal LM: (B, T, V); CLIP: (B, B))."""

    @abc.abstractmethod
    def per_sample_loss(self, model: torch.nn.Module, batch: Batch) -> torch.Tensor:
        """Unreduced, differentiable loss of shape (B,)."""

    def loss(self, model: torch.nn.Module, batch: Batch, *, weights: torch.Tensor | None = None) -> torch.Tensor:
        """Scalar loss: mean of per-sample losses, or ``sum_i w_i l_i / sum_i w_i`` with ``weights`` (CRAIG)."""
        losses = self.per_sample_loss(model, batch)
        return reduce_loss(losses, weights)

    def labels(self, batch: Batch) -> torch.Tensor:
        """Per-sample targets; families without them raise :class:`InvalidInputError`."""
        raise InvalidInputError(f"task {self.name!r} has no per-sample class labels")

    def with_labels(self, batch: Batch, labels: torch.Tensor) -> Batch:
        """The same batch with its targets replaced (random-label / wrong-label methods)."""
        raise InvalidInputError(f"task {self.name!r} does not support replacing labels")

    def with_inputs(self, batch: Batch, inputs: Any) -> Batch:
        """The same batch with its model inputs replaced (adversarial / noise inputs, e.g. Boundary Shrink)."""
        raise InvalidInputError(f"task {self.name!r} does not support replacing inputs")

    def num_classes(self, model: torch.nn.Module, batch: Batch) -> int | None:
        """Number of classes the model predicts, or None when the family has no fixed label space."""
        return None

    def label_logits(self, model: torch.nn.Module, batch: Batch) -> torch.Tensor:
        """Logits (B, C) over the label space that :meth:`labels` and :meth:`num_classes` index: what label-based
        methods (random / wrong labels, the true Fisher) train or sample against. A classifier's outputs;
        a contrastive model's zero-shot logits over its class prompts."""
        return self.outputs(model, batch)

    def features_input(self, batch: Batch) -> Any:
        """What to feed ``model(...)`` (for forward hooks / embeddings)."""
        return batch

    def embeddings(self, model: torch.nn.Module, batch: Batch) -> torch.Tensor | None:
        """The family's own per-sample embedding (B, d) for selection, or None to use penultimate features
        (CLIP: the joint normalised image and text embedding)."""
        return None

    def separable(self, model: torch.nn.Module, data: Any) -> "Task":
        """A task whose ``per_sample_loss`` of a sample depends on that sample alone (what per-sample gradients
        mean). Most families already are; a contrastive loss, which couples the pairs of a batch, is not."""
        return self


def reduce_loss(losses: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """``mean(l)`` or the weighted mean ``sum(w * l) / sum(w)``; validates ``weights``."""
    if weights is None:
        return losses.mean()
    w = torch.as_tensor(weights, device=losses.device).to(losses.dtype).reshape(-1)
    if w.shape[0] != losses.shape[0]:
        raise InvalidInputError(f"weights has {w.shape[0]} entries but the batch has {losses.shape[0]} samples")
    total = w.sum()
    if not torch.isfinite(total) or bool((w < 0).any()):
        raise InvalidInputError("weights must be finite and non-negative")
    if float(total) == 0.0:
        # An all-zero-weight batch carries no information: contribute a zero that still has a graph.
        return (losses * w).sum()
    return (losses * w).sum() / total
