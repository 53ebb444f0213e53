"""Classification adapter: batches ``(x, y)``, logits ``(B, C)``, cross-entropy loss."""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from ..errors import ErasusTypeError, InvalidInputError
from .base import Batch, Task, register_task

__all__ = ["ClassificationTask", "check_label_range", "logits_of"]


def check_label_range(labels: torch.Tensor, num_classes: int, *, where: str = "") -> None:
    """Refuse class ids outside ``[0, num_classes)`` with the label and the model's class count (torch would
    raise an opaque ``IndexError: Target 10 is out of bounds`` on CPU and a device assert on CUDA)."""
    if labels.numel() == 0 or torch._C._functorch.is_functorch_wrapped_tensor(labels):
        # inside torch.func transforms (per-sample gradients) a value check is not allowed; the same data is
        # checked before the strategy's work starts and by every plain forward
        return
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0 or hi >= num_classes:
        bad = lo if lo < 0 else hi
        raise InvalidInputError(
            f"label {bad}{where} is out of range for a model with {num_classes} classes (expected 0..{num_classes - 1})"
        )


def logits_of(out: Any) -> torch.Tensor:
    """Logits from a plain tensor output or an HF-style output object / dict with ``logits``."""
    if isinstance(out, torch.Tensor):
        return out
    logits = out.get("logits") if isinstance(out, Mapping) else getattr(out, "logits", None)
    if logits is None and isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        logits = out[0]
    if not isinstance(logits, torch.Tensor):
        raise ErasusTypeError(f"the model returned {type(out).__name__}; expected a logits tensor or an object with .logits")
    return logits


def _takes_attention_mask(model: torch.nn.Module) -> bool:
    """Whether ``model.forward`` has an ``attention_mask`` parameter (HF audio classifiers do; a plain module or
    a wrapper that builds its own mask, like :class:`erasus.models.BERTWrapper`, does not)."""
    try:
        return "attention_mask" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


@register_task("classification")
class ClassificationTask(Task):
    """Supervised classification: ``loss_i = CE(f(x_i), y_i)``.

    Batches are ``(x, y)`` (tuples or lists, as a ``DataLoader`` collates them) or ``{"x"|"pixel_values"|
    "input_values"|"input_features"|"input_ids": ..., "labels"|"y": ...}`` dicts (``input_values`` is what
    ``Wav2Vec2ForSequenceClassification`` / ``HubertForSequenceClassification`` take, ``pixel_values`` what
    ``VideoMAEForVideoClassification`` takes); a dict's ``attention_mask`` is passed on to a model whose
    ``forward`` takes one (padded audio). A batch holding only ``x`` works for :meth:`outputs`. ``label_smoothing`` is passed to
    :func:`torch.nn.functional.cross_entropy`.
    """

    name = "classification"
    _X_KEYS = ("x", "inputs", "pixel_values", "input_values", "input_features", "input_ids")
    _Y_KEYS = ("y", "labels", "label", "targets")

    def __init__(self, *, label_smoothing: float = 0.0) -> None:
        if not 0.0 <= label_smoothing < 1.0:
            raise InvalidInputError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.label_smoothing = float(label_smoothing)

    def _split(self, batch: Batch) -> tuple[Any, torch.Tensor | None]:
        if isinstance(batch, torch.Tensor):
            return batch, None
        if isinstance(batch, Mapping):
            x = next((batch[k] for k in self._X_KEYS if k in batch), None)
            y = next((batch[k] for k in self._Y_KEYS if k in batch), None)
            if x is None:
                raise InvalidInputError(f"a classification batch dict needs one of the keys {self._X_KEYS}, got {list(batch)}")
            return x, y
        if isinstance(batch, Sequence) and not isinstance(batch, str):
            if len(batch) == 1:
                return batch[0], None
            if len(batch) == 2:
                return batch[0], batch[1]
            raise InvalidInputError(f"a classification batch is (x, y); got a sequence of {len(batch)} items")
        raise ErasusTypeError(f"a classification batch is (x, y), a dict or a tensor, got {type(batch).__name__}")

    def outputs(self, model: torch.nn.Module, batch: Batch) -> torch.Tensor:
        x, _ = self._split(batch)
        mask = batch.get("attention_mask") if isinstance(batch, Mapping) else None
        if mask is not None and _takes_attention_mask(model):
            logits = logits_of(model(x, attention_mask=mask))
        else:
            logits = logits_of(model(x))
        if logits.ndim != 2:
            raise InvalidInputError(f"a classifier must return logits of shape (B, C), got {tuple(logits.shape)}")
        return logits

    def per_sample_loss(self, model: torch.nn.Module, batch: Batch) -> torch.Tensor:
        logits = self.outputs(model, batch)
        y = self.labels(batch).to(logits.device)
        check_label_range(y, logits.shape[-1])
        return F.cross_entropy(logits, y, reduction="none", label_smoothing=self.label_smoothing)

    def labels(self, batch: Batch) -> torch.Tensor:
        _, y = self._split(batch)
        if y is None:
            raise InvalidInputError("this classification batch has no labels; pass (x, y) pairs")
        y = torch.as_tensor(y)
        if y.dtype.is_floating_point or y.dtype == torch.bool:
            raise ErasusTypeError(f"classification labels must be integer class ids, got dtype {y.dtype}")
        return y.reshape(-1).long()

    def with_labels(self, batch: Batch, labels: torch.Tensor) -> Batch:
        x, _ = self._split(batch)
        if isinstance(batch, Mapping):
            out = dict(batch)
            key = next((k for k in self._Y_KEYS if k in batch), "labels")
            out[key] = labels
            return out
        return (x, labels)

    def with_inputs(self, batch: Batch, inputs: Any) -> Batch:
        _, y = self._split(batch)
        if isinstance(batch, Mapping):
            out = dict(batch)
            out[next(k for k in self._X_KEYS if k in batch)] = inputs
            return out
        return (inputs,) if y is None else (inputs, y)

    def num_classes(self, model: torch.nn.Module, batch: Batch) -> int | None:
        config = getattr(model, "config", None)
        n = getattr(config, "num_labels", None)
        if isinstance(n, int) and n > 0:
            return n
        with torch.no_grad():
            return int(self.outputs(model, batch).shape[-1])

    def features_input(self, batch: Batch) -> Any:
        return self._split(batch)[0]
