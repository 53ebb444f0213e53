"""Retraining from scratch on the retain set: exact unlearning, the reference every method is judged against."""

from __future__ import annotations

from typing import Callable

import torch

from ..errors import ErasusTypeError
from ..registry import register_strategy
from .base import Run, UnlearningStrategy, reinitialize

__all__ = ["Retrain"]


@register_strategy("retrain")
class Retrain(UnlearningStrategy):
    """Gold standard: train a fresh model on ``D_r = D \\ D_f`` only, ``theta = argmin E_{D_r}[l]``.

    ``model_factory()`` builds the fresh model (default: a copy of ``model`` with every layer's
    ``reset_parameters()`` called under ``seed``); the recipe is ``lr``, ``epochs`` (passes over the retain
    set, default 30), ``optimizer``, ``momentum``, ``weight_decay`` and ``batch_size``. The forget set and its
    ``weights`` are not used: nothing of them enters training, and ``unlearn`` runs without them.
    """

    defaults = {"lr": 0.05, "model_factory": None, "default_epochs": 30}
    retain = "required"
    forget_set = "optional"
    gradient_based = False

    def _unlearn(
        self, model: torch.nn.Module, run: Run, *, model_factory: Callable[[], torch.nn.Module] | None, default_epochs: float
    ) -> torch.nn.Module:
        if model_factory is None:
            fresh = reinitialize(model, seed=run.seed)
        else:
            fresh = model_factory()
            if not isinstance(fresh, torch.nn.Module):
                raise ErasusTypeError(f"model_factory must return an nn.Module, got {type(fresh).__name__}")
        fresh.to(run.device)
        stream = run.retain_stream()
        run.train(
            fresh,
            lambda _: run.task.loss(fresh, next(stream)),
            num_steps=run.num_steps(default_epochs, which="retain"),
            desc="retrain on retain",
        )
        self.info_["retrain_steps"] = len(run.history)
        return fresh
