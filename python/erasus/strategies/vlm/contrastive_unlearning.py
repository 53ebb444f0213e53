"""Contrastive unlearning for CLIP-style models: push forget pairs apart, keep retain pairs aligned."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ...errors import InvalidInputError
from ...registry import register_strategy
from ..base import Run, UnlearningStrategy, weighted
from .common import contrastive_task, frozen_except, tower_parameters

__all__ = ["ContrastiveUnlearningStrategy"]


@register_strategy("contrastive_unlearning")
class ContrastiveUnlearningStrategy(UnlearningStrategy):
    """Contrastive unlearning of image-text pairs (the erasus specification's ``contrastive_unlearning``):

    ``min_theta  sum_i w_i max(0, cos(v_i, t_i) - margin) / sum_i w_i  +  alpha * L_r``

    the forget term pulls each forget image and its caption apart until their cosine is at most ``margin`` (and
    then stops, unlike unbounded gradient ascent), ``L_r`` the symmetric InfoNCE of retain batches keeps the
    retain pairs aligned. It is the image-text form of the push-away / keep-close objective of Lee et al.,
    "Contrastive Unlearning: A Contrastive Approach to Machine Unlearning" (arXiv 2401.10458, 2024), whose
    classifier version pushes a forget sample's embedding away from its class's retain samples; with one
    caption per image the positive is the caption itself. ``logit_scale`` stays frozen.

    Defaults: ``margin = 0`` (forget pairs end up no more similar than unrelated ones), ``alpha = 1``, AdamW
    at lr 1e-5 (CLIP fine-tuning's scale), 5 epochs over the forget set.
    """

    defaults = {"lr": 1e-5, "margin": 0.0, "alpha": 1.0, "default_epochs": 5, "optimizer": "adamw"}
    retain = "optional"

    def _unlearn(self, model: torch.nn.Module, run: Run, *, margin: float, alpha: float,
                 default_epochs: float) -> torch.nn.Module:
        task = contrastive_task(run.task, self.registry_name)
        if not -1.0 <= float(margin) <= 1.0:
            raise InvalidInputError(f"margin is a cosine similarity in [-1, 1], got {margin!r}")
        if not alpha >= 0:
            raise InvalidInputError(f"alpha must be non-negative, got {alpha!r}")
        towers = tower_parameters(model)
        trainable = [p for p in towers["vision"] + towers["text"] if p.requires_grad]
        forget = run.forget_stream()
        retain = run.retain_stream() if run.retain is not None and alpha > 0 else None

        def loss(_: int) -> torch.Tensor:
            batch, w = next(forget)
            v, t = task.embed(model, batch)
            push = weighted(F.relu((v * t).sum(-1) - margin), w)
            if retain is None:
                return push
            return push + alpha * task.loss(model, next(retain))

        with frozen_except(model, trainable):
            run.train(model, loss, num_steps=run.num_steps(default_epochs), desc="push forget pairs apart",
                      optimizer=run.make_optimizer(trainable))
        return model
