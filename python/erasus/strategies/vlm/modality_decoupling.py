"""Modality decoupling: forget image-text pairs with separate learning rates for the two towers."""

from __future__ import annotations

from typing import Any

import torch
from tqdm.auto import tqdm

from ...errors import InvalidInputError, NonFiniteError
from ...registry import register_strategy
from ...tasks.contrastive import concat_pair_batches
from ..base import Run, UnlearningStrategy, weighted
from .common import contrastive_task, frozen_except, tower_parameters

__all__ = ["ModalityDecouplingStrategy"]


@register_strategy("modality_decoupling")
class ModalityDecouplingStrategy(UnlearningStrategy):
    """Modality decoupling (the erasus specification's vision-language algorithm): each step is a forget phase
    then a retain phase, with the vision tower (and its projection) updated at ``vision_lr`` and the text tower
    (and its projection) at ``text_lr``:

    * forget: ``theta <- theta + eta_m * grad L_f``, ``L_f = sum_i w_i l_i / sum_i w_i`` the weighted
      symmetric InfoNCE of forget pairs (gradient ascent on the contrastive loss), each scored against the forget
      batch and, with ``contrast_retain=True`` (when retain data is given), a retain batch as extra negatives:
      pairs of one concept are near-indistinguishable among themselves, so their in-batch InfoNCE has little
      gradient (``dl/dv_i = s sum_j (p_ij - [i=j]) t_j ~ 0`` when every ``t_j`` is alike). The default ``False``
      is the in-batch loss that ``benches/vlm`` measured;
    * retain: ``theta <- theta - eta_m * grad (alignment_weight * L_r)``, ``L_r`` the InfoNCE of a retain batch,
      which re-aligns the retain pairs the forget phase pulled apart (the "forgetting cascade").

    ``eta_vision = vision_lr``, ``eta_text = text_lr``; a tower whose rate is 0 is frozen (no gradient, no
    optimizer state) and comes out bit-identical. The temperature ``logit_scale`` is frozen: ascending on it
    would flatten every logit, forgetting nothing specific. The retain phase is skipped without retain data.
    ``lr`` is not used (the tower rates replace it). The specification names no paper or reference code for
    this method; its defaults (``vision_lr=1e-5``, ``text_lr=1e-4``, AdamW) are the specification's example.
    """

    data_parallel = False

    defaults = {"vision_lr": 1e-5, "text_lr": 1e-4, "alignment_weight": 1.0, "contrast_retain": False,
                "default_epochs": 5, "optimizer": "adamw"}
    retain = "optional"
    supports_until = False  # two optimizer phases per step in its own loop, not Run.train

    def _unlearn(self, model: torch.nn.Module, run: Run, *, vision_lr: float, text_lr: float, alignment_weight: float,
                 contrast_retain: bool, default_epochs: float) -> torch.nn.Module:
        task = contrastive_task(run.task, self.registry_name)
        for name, value in (("vision_lr", vision_lr), ("text_lr", text_lr), ("alignment_weight", alignment_weight)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0 or value == float("inf"):
                raise InvalidInputError(f"{name} must be a finite non-negative number, got {value!r}")
        if vision_lr == 0 and text_lr == 0:
            raise InvalidInputError("vision_lr and text_lr are both 0: nothing would be trained")
        towers = tower_parameters(model)
        groups = [{"params": towers[t], "lr": float(lr)} for t, lr in (("vision", vision_lr), ("text", text_lr))
                  if lr > 0 and towers[t]]
        trainable = [p for g in groups for p in g["params"] if p.requires_grad]
        if not trainable:
            raise InvalidInputError("the towers with a non-zero learning rate have no trainable parameters")
        steps = run.num_steps(default_epochs)
        forget = run.forget_stream()
        retain = run.retain_stream() if run.retain is not None else None
        with frozen_except(model, trainable):
            for g in groups:
                g["params"] = [p for p in g["params"] if p.requires_grad]
            opt = run.make_optimizer(groups)  # type: ignore[arg-type]
            model.train()
            bar = tqdm(range(steps), desc=f"{self.registry_name}: forget + retain phases", disable=not run.progress,
                       leave=False)
            for step in bar:
                batch, w = next(forget)
                if retain is not None and contrast_retain:
                    n = task.batch_size(batch)
                    losses = task.per_sample_loss(model, concat_pair_batches(batch, next(retain)))[:n]
                    forget_loss = weighted(losses, w)
                else:
                    forget_loss = task.loss(model, batch, weights=w)
                self._step(opt, -forget_loss, step, "forget")
                value = -float(forget_loss.detach())
                if retain is not None and alignment_weight > 0:
                    retain_loss = alignment_weight * task.loss(model, next(retain))
                    self._step(opt, retain_loss, step, "retain")
                    value += float(retain_loss.detach())
                run.history.append(value)
                bar.set_postfix(loss=f"{value:.4f}", refresh=False)
        return model

    def _step(self, opt: torch.optim.Optimizer, loss: torch.Tensor, step: int, phase: str) -> None:
        if not torch.isfinite(loss):
            raise NonFiniteError(f"{self.registry_name}: the {phase} loss became {loss.item()} at step {step}; lower "
                                 "vision_lr / text_lr")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
