"""Negative Preference Optimization (Zhang et al., "Negative Preference Optimization: From Catastrophic
Collapse to Effective Unlearning", COLM 2024)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ...registry import register_strategy
from ...tasks.base import reduce_loss
from ..base import Run
from .common import LLMStrategy, frozen_reference, sequence_log_prob

__all__ = ["NPO", "npo_loss"]


def npo_loss(log_prob: torch.Tensor, ref_log_prob: torch.Tensor, *, beta: float,
             weights: torch.Tensor | None = None) -> torch.Tensor:
    """``L_NPO = -(2/beta) E[log sigmoid(-beta (log pi_theta(y|x) - log pi_ref(y|x)))]`` over summed
    answer log-likelihoods (weighted mean with coreset ``weights``)."""
    return reduce_loss(-2.0 / beta * F.logsigmoid(-beta * (log_prob - ref_log_prob)), weights)


@register_strategy("npo")
class NPO(LLMStrategy):
    """NPO: ``gamma * L_NPO(forget) + alpha * NLL(retain)``, ``L_NPO`` as in :func:`npo_loss` against the frozen
    model before unlearning.

    Defaults (OpenUnlearning / the paper's TOFU runs): ``beta = 0.1``, ``gamma = 1``, ``alpha = 1`` (retain
    term only when retain data is given), AdamW lr 1e-5, 10 epochs.

    Also for speech recognition: on Whisper (the seq2seq task) ``log pi(y|x)`` is the summed log-likelihood of
    the transcript's tokens given the audio, so NPO pushes the forgotten transcripts below the reference with
    NPO's bounded loss instead of gradient ascent's unbounded one (``retain_loss="nll"`` only).
    """

    accepts_seq2seq = True

    llm_defaults = {"lr": 1e-5, "beta": 0.1, "gamma": 1.0, "alpha": 1.0, "default_epochs": 10, "retain_loss": "nll"}

    def _unlearn_lm(self, model: torch.nn.Module, run: Run, *, beta: float, gamma: float, alpha: float,
                    default_epochs: float) -> torch.nn.Module:
        ref = frozen_reference(model, run)
        forget = run.forget_stream()
        retain = run.retain_stream() if run.retain is not None else None

        def loss(_: int) -> torch.Tensor:
            batch, w = next(forget)
            ref_lp = ref(lambda m: sequence_log_prob(m, batch, task=run.task))
            forget_term = npo_loss(sequence_log_prob(model, batch, task=run.task), ref_lp, beta=beta, weights=w)
            return gamma * forget_term + self.retain_term(model, run, retain, alpha)

        self.train(model, run, loss, num_steps=run.num_steps(default_epochs), desc="NPO")
        return model
