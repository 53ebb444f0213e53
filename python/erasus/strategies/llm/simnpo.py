"""SimNPO (Fan et al., "Simplicity Prevails: Rethinking Negative Preference Optimization for LLM
Unlearning", 2024): NPO without a reference model, with length-normalized rewards."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ...registry import register_strategy
from ...tasks.base import reduce_loss
from ..base import Run
from .common import LLMStrategy, answer_token_count, sequence_log_prob

__all__ = ["SimNPO", "simnpo_loss"]


def simnpo_loss(log_prob: torch.Tensor, lengths: torch.Tensor, *, beta: float, delta: float,
                weights: torch.Tensor | None = None) -> torch.Tensor:
    """``L = -(2/beta) E[log sigmoid(-(beta/|y|) log pi_theta(y|x) - beta*delta)]``
    (OpenUnlearning: ``-(2/beta) logsigmoid(beta (NLL/|y| - delta))``)."""
    avg_nll = -log_prob / lengths.clamp(min=1).to(log_prob.dtype)
    return reduce_loss(-2.0 / beta * F.logsigmoid(beta * (avg_nll - delta)), weights)


@register_strategy("simnpo")
class SimNPO(LLMStrategy):
    """SimNPO: ``gamma * L_SimNPO(forget) + alpha * NLL(retain)`` (:func:`simnpo_loss`).

    Defaults (OpenUnlearning's TOFU config): ``beta = 4.5``, ``delta = 0``, ``gamma = 0.125``, ``alpha = 1``,
    AdamW lr 1e-5, 10 epochs.
    """

    llm_defaults = {"lr": 1e-5, "beta": 4.5, "delta": 0.0, "gamma": 0.125, "alpha": 1.0, "default_epochs": 10, "retain_loss": "nll"}

    def _unlearn_lm(self, model: torch.nn.Module, run: Run, *, beta: float, delta: float, gamma: float,
                    alpha: float, default_epochs: float) -> torch.nn.Module:
        forget = run.forget_stream()
        retain = run.retain_stream() if run.retain is not None else None

        def loss(_: int) -> torch.Tensor:
            batch, w = next(forget)
            lp = sequence_log_prob(model, batch)
            forget_term = simnpo_loss(lp, answer_token_count(batch), beta=beta, delta=delta, weights=w)
            return gamma * forget_term + self.retain_term(model, run, retain, alpha)

        self.train(model, run, loss, num_steps=run.num_steps(default_epochs), desc="SimNPO")
        return model
