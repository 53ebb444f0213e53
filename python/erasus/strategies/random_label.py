"""Random-label fine-tuning: train the forget set towards random labels, then repair on the retain set."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch

from ..registry import register_strategy
from .base import Run, UnlearningStrategy, random_labels, relabelled_loss, weighted

__all__ = ["RandomLabel", "forget_then_retain", "random_label_loss", "random_label_step"]


def forget_then_retain(
    run: Run, *, default_epochs: float, alpha: float
) -> tuple[Iterator[tuple[str, Any, torch.Tensor | None]], int]:
    """The official SalUn / RL schedule: each epoch one full (reshuffled) pass over the forget set, then one full
    pass over the retain set (when given and ``alpha != 0``: zero-loss steps would still move the weights
    through momentum), one optimizer step per batch.

    Returns an endless stream of ``("forget", batch, weights)`` / ``("retain", batch, None)`` and the number of
    steps: ``steps`` when given, else ``round(epochs * (F + R))`` for ``F`` forget and ``R`` retain batches, so a
    fractional epoch ends inside the schedule.
    """
    with_retain = run.retain is not None and alpha != 0
    per_epoch = run.batches_per_epoch("forget") + (run.batches_per_epoch("retain") if with_retain else 0)
    if run.steps is not None:
        num_steps = run.steps
    else:
        epochs = run.epochs if run.epochs is not None else default_epochs
        num_steps = max(1, int(round(epochs * per_epoch)))

    def stream() -> Iterator[tuple[str, Any, torch.Tensor | None]]:
        while True:
            for batch, w in run.forget_epoch():
                yield "forget", batch, w
            if with_retain:
                for batch in run.retain_epoch():
                    yield "retain", batch, None

    return stream(), num_steps


def random_label_loss(
    model: torch.nn.Module, run: Run, schedule: Iterator[tuple[str, Any, torch.Tensor | None]], *, num_classes: int,
    exclude_true: bool, alpha: float,
) -> Callable[[int], torch.Tensor]:
    """The per-step loss over :func:`forget_then_retain`: ``sum_i w_i CE(f(x_i), y'_i) / sum_i w_i`` on a forget
    batch with fresh uniform random labels ``y'``, ``alpha * CE(f(x), y)`` on a retain batch."""

    def loss(_: int) -> torch.Tensor:
        kind, batch, w = next(schedule)
        if kind == "retain":
            return alpha * run.task.loss(model, batch)
        y = run.task.labels(batch)
        y_rand = random_labels(y, num_classes, exclude_true=exclude_true, generator=run.generator)
        return weighted(relabelled_loss(model, run.task, batch, y_rand), w)

    return loss


def random_label_step(
    model: torch.nn.Module, run: Run, forget, retain, *, num_classes: int, exclude_true: bool, alpha: float
) -> torch.Tensor:
    """One mixed step (amnesiac relabelling): ``sum_i w_i CE(f(x_i), y'_i) / sum_i w_i + alpha * E_r[CE]`` on the
    next forget batch and the next retain batch, with fresh random labels ``y'``."""
    batch, w = next(forget)
    y = run.task.labels(batch)
    y_rand = random_labels(y, num_classes, exclude_true=exclude_true, generator=run.generator)
    loss = weighted(relabelled_loss(model, run.task, batch, y_rand), w)
    if retain is not None:
        loss = loss + alpha * run.task.loss(model, next(retain))
    return loss


@register_strategy("random_label")
class RandomLabel(UnlearningStrategy):
    """Random labelling (RL; Golatkar et al. CVPR 2020, the SalUn benchmark baseline of Fan et al. ICLR 2024).

    The schedule of the official code (OPTML-Group/Unlearn-Saliency, ``Classification/unlearn/RL.py``, the
    CIFAR-10 branch): each epoch a full pass over the forget set with labels ``y'_i ~ U{0..C-1}`` drawn per batch
    (``sum_i w_i CE(f(x_i), y'_i) / sum_i w_i``), then a full pass over the retain set with the true labels
    (``alpha * CE``; the code has ``alpha = 1``), one optimizer step per batch; without a retain set only the
    forget passes run. ``steps`` caps the total number of steps along that schedule.

    Defaults: ``alpha = 1``, lr 0.01, 10 epochs, SGD momentum 0.9.

    Labels are those of :meth:`Task.label_logits`. On a contrastive model (CLIP) a pair's label is its *class
    prompt* (``task=ContrastiveTask(class_prompts=[...], tokenizer=processor)``): a random label trains the image
    towards a random class prompt, ``CE(s * v_i . c_k, y'_i)`` over the zero-shot logits, the pair's own caption
    unused; retain batches keep the symmetric InfoNCE (the image-text alignment). SalUn and amnesiac relabelling
    use the same definition.
    """

    defaults = {"lr": 0.01, "alpha": 1.0, "default_epochs": 10}
    retain = "optional"

    def _unlearn(self, model: torch.nn.Module, run: Run, *, alpha: float, default_epochs: float) -> torch.nn.Module:
        num_classes = run.num_classes(model)
        schedule, num_steps = forget_then_retain(run, default_epochs=default_epochs, alpha=alpha)
        loss = random_label_loss(model, run, schedule, num_classes=num_classes, exclude_true=False, alpha=alpha)
        run.train(model, loss, num_steps=num_steps, desc="random labels, then retain")
        return model
