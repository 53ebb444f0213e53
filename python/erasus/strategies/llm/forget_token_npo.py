"""NPO on forget-specific tokens: NPO's loss (Zhang et al., "Negative Preference Optimization", 2024) applied
token by token, only on the answer tokens that are over-represented in the forget set.

Formerly registered as ``token_masking`` and attributed to Zhou et al., "Not All Tokens Are Meant to Be
Forgotten" (2025); that paper's TIF picks its unwanted words with a targeted-information identifier and
trains a logit-preference plus preservation loss, which is not what this does. The token rule here is erasus's
own heuristic (a smoothed frequency ratio against the retain answers), not a published method; selective
unlearning papers (Wan et al., 2025, "Not Every Token Needs Forgetting"; Zhou et al., 2025) share the idea of
unlearning a subset of tokens but choose it differently."""

from __future__ import annotations

from collections import Counter
from typing import Any

import torch
import torch.nn.functional as F

from ...errors import InvalidInputError
from ...registry import register_strategy
from ...tasks.base import reduce_loss
from ...tasks.causal_lm import IGNORE_INDEX, token_log_probs
from ..base import Run
from .common import LLMStrategy, frozen_reference

__all__ = ["ForgetTokenNPO", "forget_specific_tokens", "masked_token_npo_loss"]


def _answer_counts(batches: Any) -> Counter[int]:
    counts: Counter[int] = Counter()
    for b in batches:
        labels = b["labels"]
        counts.update(int(t) for t in labels[labels != IGNORE_INDEX].reshape(-1).tolist())
    return counts


def forget_specific_tokens(forget_counts: Counter[int], retain_counts: Counter[int], *, ratio: float) -> set[int]:
    """Tokens whose relative frequency in the forget answers exceeds ``ratio`` times their add-one smoothed
    relative frequency in the retain answers: ``c_f(t)/N_f > ratio * (c_r(t) + 1)/(N_r + |V_f|)``."""
    n_f = sum(forget_counts.values())
    n_r = sum(retain_counts.values()) + len(forget_counts)
    if n_f == 0:
        raise InvalidInputError("the forget set has no answer tokens")
    return {t for t, c in forget_counts.items() if c / n_f > ratio * (retain_counts.get(t, 0) + 1) / n_r}


def masked_token_npo_loss(logp: torch.Tensor, ref_logp: torch.Tensor, mask: torch.Tensor, *, beta: float,
                          weights: torch.Tensor | None = None) -> torch.Tensor:
    """Per sample, the mean over masked tokens of ``-(2/beta) log sigmoid(-beta (log p_t - log p_ref_t))``;
    samples without a masked token contribute 0."""
    per_token = -2.0 / beta * F.logsigmoid(-beta * (logp - ref_logp)) * mask
    return reduce_loss(per_token.sum(-1) / mask.sum(-1).clamp(min=1), weights)


@register_strategy("forget_token_npo")
class ForgetTokenNPO(LLMStrategy):
    """NPO on forget-specific tokens (an erasus heuristic, see the module docstring):
    ``gamma * L_tokNPO(forget, S) + alpha * NLL(retain)`` where ``S`` holds the answer tokens that are
    forget-specific by :func:`forget_specific_tokens` (shared words such as "the", "wrote" stay untouched) and
    :func:`masked_token_npo_loss` is NPO applied token by token against the frozen model.

    Defaults: ``ratio = 2``, ``beta = 0.1``, ``gamma = alpha = 1``, AdamW lr 1e-5, 10 epochs. ``info_["tokens"]``
    lists the masked token ids.
    """

    retain = "required"
    llm_defaults = {"lr": 1e-5, "ratio": 2.0, "beta": 0.1, "gamma": 1.0, "alpha": 1.0, "default_epochs": 10, "retain_loss": "nll"}

    def _unlearn_lm(self, model: torch.nn.Module, run: Run, *, ratio: float, beta: float, gamma: float, alpha: float,
                    default_epochs: float) -> torch.nn.Module:
        if ratio <= 0:
            raise InvalidInputError(f"ratio must be positive, got {ratio}")
        specific = forget_specific_tokens(_answer_counts(b for b, _ in run.forget_epoch(shuffle=False)),
                                          _answer_counts(run.retain_epoch(shuffle=False)), ratio=ratio)
        if not specific:
            raise InvalidInputError(f"no answer token is {ratio}x more frequent in forget than in retain; lower ratio")
        self.info_["tokens"] = sorted(specific)
        vocab_mask: list[torch.Tensor] = []
        ref = frozen_reference(model, run)
        forget = run.forget_stream()
        retain = run.retain_stream()

        def loss(_: int) -> torch.Tensor:
            batch, w = next(forget)
            labels = batch["labels"][:, 1:]
            if not vocab_mask:
                vocab_mask.append(torch.tensor(sorted(specific), device=labels.device))
            mask = torch.isin(labels, vocab_mask[0]) & (labels != IGNORE_INDEX)
            logp, _ = token_log_probs(run.task.outputs(model, batch), batch["labels"])
            ref_logp = ref(lambda m: token_log_probs(run.task.outputs(m, batch), batch["labels"])[0])
            forget_term = masked_token_npo_loss(logp, ref_logp, mask, beta=beta, weights=w)
            return gamma * forget_term + self.retain_term(model, run, retain, alpha)

        self.train(model, run, loss, num_steps=run.num_steps(default_epochs), desc="token-masked NPO")
        return model
