"""Fine-tuning on the retain set (catastrophic forgetting of the forget set)."""

from __future__ import annotations

import torch

from ..registry import register_strategy
from .base import Run, UnlearningStrategy

__all__ = ["Finetune"]


@register_strategy("finetune")
class Finetune(UnlearningStrategy):
    """Fine-tune (FT) on the retain set only: ``min_theta E_{D_r}[l(theta; x, y)]`` starting from the trained model.

    The standard baseline of Golatkar et al. (CVPR 2020), Warnecke et al. (NDSS 2023) and Jia et al. (NeurIPS 2023),
    who fine-tune for 10 epochs with lr in [0.01, 0.1]; defaults: lr 0.01, SGD momentum 0.9, 10 epochs over the
    retain set. The forget set is not read, so ``unlearn`` runs without one; given, its ``weights`` do not enter
    the loss.
    """

    defaults = {"lr": 0.01, "default_epochs": 10}
    retain = "required"
    forget_set = "optional"

    def _unlearn(self, model: torch.nn.Module, run: Run, *, default_epochs: float) -> torch.nn.Module:
        stream = run.retain_stream()
        run.train(
            model,
            lambda _: run.task.loss(model, next(stream)),
            num_steps=run.num_steps(default_epochs, which="retain"),
            desc="fine-tune on retain",
        )
        return model
