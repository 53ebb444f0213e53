"""Top-k accuracy on the forget, retain and test splits."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ..errors import InvalidInputError
from ..registry import register_metric
from .base import Metric
from .outputs import class_outputs

__all__ = ["topk_accuracy", "AccuracyMetric", "VideoAccuracyMetric"]


def topk_accuracy(logits: torch.Tensor, labels: torch.Tensor, *, k: int = 1) -> float:
    """Fraction of samples whose label is among the ``k`` largest logits: ``mean_i [y_i in top_k(z_i)]``."""
    logits = torch.as_tensor(logits)
    labels = torch.as_tensor(labels)
    if logits.ndim != 2 or labels.shape != (logits.shape[0],) or logits.shape[0] == 0:
        raise InvalidInputError(
            f"topk_accuracy needs logits (N, C) and labels (N,) with N > 0, got {tuple(logits.shape)} and "
            f"{tuple(labels.shape)}"
        )
    if not 1 <= k <= logits.shape[1]:
        raise InvalidInputError(f"k must be in [1, {logits.shape[1]}] (the number of classes), got {k}")
    top = logits.topk(k, dim=1).indices
    return float((top == labels.reshape(-1, 1).to(top.device)).any(dim=1).double().mean())


@register_metric("accuracy")
class AccuracyMetric(Metric):
    """Top-k accuracy of a classifier on each split given.

    Keys ``{split}_accuracy`` (top-1) and ``{split}_top{k}_accuracy`` for every other ``k`` in ``topk``.
    SalUn's "UA" (unlearning accuracy) is ``1 - forget_accuracy``.
    """

    inputs = ("forget", "retain", "test")

    def __init__(self, *, topk: Sequence[int] = (1,), **options: Any) -> None:
        super().__init__(**options)
        ks = tuple(int(k) for k in topk)
        if not ks or any(k < 1 for k in ks):
            raise InvalidInputError(f"topk must be a non-empty list of positive ints, got {topk!r}")
        self.topk = ks

    def compute(self, model: torch.nn.Module, forget: Any = None, retain: Any = None, test: Any = None
                ) -> dict[str, float]:
        splits = {"forget": forget, "retain": retain, "test": test}
        if all(v is None for v in splits.values()):
            raise InvalidInputError("accuracy needs at least one of forget=, retain=, test=")
        out: dict[str, float] = {}
        for split, data in splits.items():
            if data is None:
                continue
            logits, labels = class_outputs(self._collect(model, data), metric="accuracy")
            for k in self.topk:
                key = f"{split}_accuracy" if k == 1 else f"{split}_top{k}_accuracy"
                out[key] = topk_accuracy(logits, labels, k=k)
        return out


@register_metric("video_accuracy")
class VideoAccuracyMetric(AccuracyMetric):
    """Clip-level top-1 and top-5 accuracy of a video classifier (the two numbers Kinetics / Something-Something
    results report, e.g. VideoMAE, Tong et al. 2022): :class:`AccuracyMetric` with ``topk=(1, 5)``.

    Keys ``{split}_accuracy`` and ``{split}_top5_accuracy``. Batches are ``{"pixel_values": (B, frames, C, H, W),
    "labels": (B,)}``; a model with fewer than 5 classes needs ``topk=(1,)`` or another k.
    """

    def __init__(self, *, topk: Sequence[int] = (1, 5), **options: Any) -> None:
        super().__init__(topk=topk, **options)
