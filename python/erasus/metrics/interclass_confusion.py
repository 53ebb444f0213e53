"""Interclass confusion (Goel et al., "Towards Adversarial Evaluation of Machine Unlearning", 2022; used by
SCRUB, Kurmanji et al., NeurIPS 2023).

The IC test trains with part of classes ``a`` and ``b`` mislabelled as each other and asks the unlearning
method to forget exactly those confused samples. Memorisation of the confusion is read off as the fraction
of samples of either class (true labels) that the model predicts as the *other* class of the pair:

    ``IC = |{i : y_i in {a, b}, argmax z_i = other(y_i)}| / |{i : y_i in {a, b}}|``

A model that unlearned the confusion has the retrained model's (small) IC on the forget and test samples.
"""

from __future__ import annotations

from typing import Any

import torch

from ..errors import InvalidInputError
from ..registry import register_metric
from .base import Metric
from .outputs import class_outputs

__all__ = ["interclass_confusion", "InterclassConfusionMetric"]


def interclass_confusion(logits: Any, labels: Any, *, classes: tuple[int, int]) -> float:
    """Fraction of samples labelled ``a`` or ``b`` predicted as the other class of the pair (NaN-free: errors if none)."""
    a, b = _pair(classes)
    logits, labels = torch.as_tensor(logits), torch.as_tensor(labels).long()
    if logits.ndim != 2 or labels.shape != (logits.shape[0],):
        raise InvalidInputError(f"need logits (N, C) and labels (N,), got {tuple(logits.shape)}, {tuple(labels.shape)}")
    if max(a, b) >= logits.shape[1]:
        raise InvalidInputError(f"classes {classes} out of range for a {logits.shape[1]}-class model")
    labels = labels.to(logits.device)
    pred = logits.argmax(1)
    in_pair = (labels == a) | (labels == b)
    if not bool(in_pair.any()):
        raise InvalidInputError(f"no sample is labelled {a} or {b}: interclass confusion is undefined here")
    other = torch.where(labels == a, torch.full_like(labels, b), torch.full_like(labels, a))
    return float((pred[in_pair] == other[in_pair]).double().mean())


def _pair(classes: Any) -> tuple[int, int]:
    try:
        a, b = (int(c) for c in classes)
    except (TypeError, ValueError):
        raise InvalidInputError(f"classes must be a pair of class indices (a, b), got {classes!r}") from None
    if a == b or a < 0 or b < 0:
        raise InvalidInputError(f"classes must be two different non-negative class indices, got {classes!r}")
    return a, b


@register_metric("interclass_confusion")
class InterclassConfusionMetric(Metric):
    """Interclass-confusion memorisation of a class pair (Goel et al. 2022; SCRUB's IC test) on each split.

    ``InterclassConfusionMetric(classes=(a, b)).compute(model, forget, retain, test)``: keys
    ``{split}_interclass_confusion``; the forget split holds the confused samples with their *true* labels.
    """

    inputs = ("forget", "retain", "test")
    group = "forgetting"

    def __init__(self, *, classes: tuple[int, int], **options: Any) -> None:
        super().__init__(**options)
        self.classes = _pair(classes)

    def compute(self, model: Any, forget: Any = None, retain: Any = None, test: Any = None) -> dict[str, float]:
        splits = {"forget": forget, "retain": retain, "test": test}
        if all(v is None for v in splits.values()):
            raise InvalidInputError("interclass_confusion needs at least one of forget=, retain=, test=")
        out = {}
        for split, data in splits.items():
            if data is not None:
                logits, labels = class_outputs(self._collect(model, data), metric="interclass_confusion")
                out[f"{split}_interclass_confusion"] = interclass_confusion(logits, labels, classes=self.classes)
        return out
