"""UNDIAL (Dong et al., "UNDIAL: Self-Distillation with Adjusted Logits for Robust Unlearning in Large
Language Models", NAACL 2025)."""

from __future__ import annotations

import torch

from ...registry import register_strategy
from ...tasks.base import reduce_loss
from ...tasks.causal_lm import IGNORE_INDEX
from ..base import Run
from .common import LLMStrategy, frozen_reference

__all__ = ["UNDIAL", "undial_loss"]


def undial_loss(logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor, *, beta: float,
                weights: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy of the student to ``softmax(z_teacher - beta * onehot(y_t))`` on each answer token,
    averaged per sample over its answer tokens: the teacher's distribution with the memorised token pushed down."""
    shift_labels = labels[:, 1:]
    mask = shift_labels != IGNORE_INDEX
    t = teacher_logits[:, :-1].float()
    onehot = torch.zeros_like(t).scatter_(-1, shift_labels.clamp(min=0).unsqueeze(-1), 1.0)
    target = torch.softmax(t - beta * onehot, dim=-1)
    ce = -(target * torch.log_softmax(logits[:, :-1].float(), dim=-1)).sum(-1)
    per_sample = (ce * mask).sum(-1) / mask.sum(-1).clamp(min=1)
    return reduce_loss(per_sample, weights)


@register_strategy("undial")
class UNDIAL(LLMStrategy):
    """UNDIAL: self-distill from the frozen model with the label token's logit lowered by ``beta``
    (:func:`undial_loss`), ``gamma * L_UNDIAL(forget) + alpha * NLL(retain)``.

    Defaults: ``beta = 10`` (OpenUnlearning), ``gamma = 1``, ``alpha = 0`` (the paper uses no retain term),
    AdamW lr 1e-4, 10 epochs.
    """

    llm_defaults = {"lr": 1e-4, "beta": 10.0, "gamma": 1.0, "alpha": 0.0, "default_epochs": 10, "retain_loss": "nll"}

    def _unlearn_lm(self, model: torch.nn.Module, run: Run, *, beta: float, gamma: float, alpha: float,
                    default_epochs: float) -> torch.nn.Module:
        ref = frozen_reference(model, run)
        forget = run.forget_stream()
        retain = run.retain_stream() if run.retain is not None else None

        def loss(_: int) -> torch.Tensor:
            batch, w = next(forget)
            teacher = ref(lambda m: run.task.outputs(m, batch))
            forget_term = undial_loss(run.task.outputs(model, batch), teacher, batch["labels"], beta=beta, weights=w)
            return gamma * forget_term + self.retain_term(model, run, retain, alpha)

        self.train(model, run, loss, num_steps=run.num_steps(default_epochs), desc="UNDIAL")
        return model
