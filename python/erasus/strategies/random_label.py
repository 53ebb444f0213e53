"""Random-label fine-tuning: train the forget set towards random labels."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..registry import register_strategy
from .base import Run, UnlearningStrategy, random_labels, weighted

__all__ = ["RandomLabel", "random_label_step"]


def random_label_step(
    model: torch.nn.Module, run: Run, forget, retain, *, num_classes: int, exclude_true: bool, alpha: float
) -> torch.Tensor:
    """``sum_i w_i CE(f(x_i), y'_i) / sum_i w_i + alpha * E_r[CE]`` with fresh random labels ``y'`` each step."""
    batch, w = next(forget)
    y = run.task.labels(batch)
    y_rand = random_labels(y, num_classes, exclude_true=exclude_true, generator=run.generator)
    logits = run.task.outputs(model, batch)
    loss = weighted(F.cross_entropy(logits, y_rand.to(logits.device), reduction="none"), w)
    if retain is not None:
        loss = loss + alpha * run.task.loss(model, next(retain))
    return loss


@register_strategy("random_label")
class RandomLabel(UnlearningStrategy):
    """Random labelling (RL; Golatkar et al. CVPR 2020, the SalUn benchmark baseline of Fan et al. ICLR 2024):
    ``min_theta  sum_i w_i CE(f(x_i), y'_i) / sum_i w_i + alpha * E_r[CE(f(x), y)]``, ``y'_i ~ U{0..C-1}``
    redrawn every step; the retain term is dropped when no retain set is given.

    Defaults: ``alpha = 1``, lr 0.01, 10 epochs over the forget set, SGD momentum 0.9.
    """

    defaults = {"lr": 0.01, "alpha": 1.0, "default_epochs": 10}
    retain = "optional"

    def _unlearn(self, model: torch.nn.Module, run: Run, *, alpha: float, default_epochs: float) -> torch.nn.Module:
        num_classes = run.num_classes(model)
        forget = run.forget_stream()
        retain = run.retain_stream() if run.retain is not None else None
        run.train(
            model,
            lambda _: random_label_step(model, run, forget, retain, num_classes=num_classes, exclude_true=False, alpha=alpha),
            num_steps=run.num_steps(default_epochs),
            desc="random labels",
        )
        return model
