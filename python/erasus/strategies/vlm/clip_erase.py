"""CLIPErase-style unlearning: a forgetting, a retention and a consistency term (Yang et al., ACL 2025)."""

from __future__ import annotations

import copy
import math

import torch

from ...errors import InvalidInputError
from ...registry import register_strategy
from ...tasks.contrastive import concat_pair_batches
from ..base import Run, UnlearningStrategy, weighted
from .common import contrastive_task, frozen_except, tower_parameters

__all__ = ["CLIPEraseStrategy"]


def uniform_kl(logits: torch.Tensor) -> torch.Tensor:
    """``KL(u || softmax(z))`` per row, ``u`` uniform over the row's ``K`` entries: ``-log K - mean_j log p_j``."""
    logp = logits.float().log_softmax(-1)
    return -math.log(logits.shape[-1]) - logp.mean(-1)


@register_strategy("clip_erase")
class CLIPEraseStrategy(UnlearningStrategy):
    """CLIPErase-style unlearning of image-text associations, after Yang et al., "CLIPErase: Efficient
    Unlearning of Visual-Textual Associations in CLIP" (ACL 2025), whose three modules are a *forgetting* module
    that disrupts the forget pairs' associations, a *retention* module that keeps retain performance and a
    *consistency* module that keeps the model close to the original:

    ``L = L_forget + alpha * L_retain + beta * L_consistency`` with

    * ``L_forget = sum_i w_i [KL(u || softmax_j S_ij) + KL(u || softmax_j S_ji)] / (2 sum_i w_i)``: each forget
      image's distribution over the captions of the step's forget + retain batch, and each forget caption's over
      its images, driven to uniform (the forget pair becomes as likely as any other, a bounded objective rather
      than unbounded ascent);
    * ``L_retain``: the symmetric InfoNCE of the retain batch;
    * ``L_consistency = mean_i (||v_i - v_i^0||^2 + ||t_i - t_i^0||^2)`` on the retain batch's normalised
      embeddings against the frozen original model's (``^0``).

    Deviation: the official code (linked from the paper's project page) was not available here; the module
    roles are the paper's, the exact loss forms above are erasus's choice, documented so they can be compared.
    ``logit_scale`` stays frozen. Defaults: ``alpha = 1``, ``beta = 1``, AdamW at lr 1e-5, 5 epochs.
    """

    defaults = {"lr": 1e-5, "alpha": 1.0, "beta": 1.0, "default_epochs": 5, "optimizer": "adamw"}
    retain = "required"

    def _unlearn(self, model: torch.nn.Module, run: Run, *, alpha: float, beta: float,
                 default_epochs: float) -> torch.nn.Module:
        task = contrastive_task(run.task, self.registry_name)
        for name, value in (("alpha", alpha), ("beta", beta)):
            if not (isinstance(value, (int, float)) and 0 <= value < float("inf")):
                raise InvalidInputError(f"{name} must be a finite non-negative number, got {value!r}")
        towers = tower_parameters(model)
        trainable = [p for p in towers["vision"] + towers["text"] if p.requires_grad]
        original = copy.deepcopy(model).eval().requires_grad_(False) if beta > 0 else None
        forget, retain = run.forget_stream(), run.retain_stream()

        def loss(_: int) -> torch.Tensor:
            batch, w = next(forget)
            rb = next(retain)
            n = task.batch_size(batch)
            logits = task.outputs(model, concat_pair_batches(batch, rb))
            forget_term = weighted((uniform_kl(logits[:n]) + uniform_kl(logits.T[:n])) / 2, w)
            total = forget_term + alpha * task.loss(model, rb)
            if original is not None:
                v, t = task.embed(model, rb)
                with torch.no_grad():
                    v0, t0 = task.embed(original, rb)
                total = total + beta * ((v - v0).square().sum(-1) + (t - t0).square().sum(-1)).mean()
            return total

        with frozen_except(model, trainable):
            run.train(model, loss, num_steps=run.num_steps(default_epochs), desc="forget + retain + consistency",
                      optimizer=run.make_optimizer(trainable))
        return model
