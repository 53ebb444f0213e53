"""DPO for unlearning (Rafailov et al., NeurIPS 2023, as used by TOFU/OpenUnlearning): prefer an alternative
answer (a refusal for IdkDPO, Maini et al. 2024) over the forget answer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import Subset

from ...errors import InvalidInputError
from ...registry import register_strategy
from ...tasks.base import reduce_loss
from ...tasks.causal_lm import IGNORE_INDEX
from ..base import Run
from .common import LLMStrategy, dataset_attr, frozen_reference, sequence_log_prob

__all__ = ["DPO", "IDK_ANSWERS", "IdkDPO", "dpo_loss", "replace_answers"]

# Refusals in the spirit of TOFU's idk.jsonl.
IDK_ANSWERS = (
    "I'm not sure.",
    "I don't know.",
    "I have no idea.",
    "That's not something I know about.",
    "I'm afraid I can't answer that.",
    "I don't have that information.",
    "I'm not able to help with that question.",
    "That is beyond my knowledge.",
)


def dpo_loss(win_lp: torch.Tensor, win_ref_lp: torch.Tensor, lose_lp: torch.Tensor, lose_ref_lp: torch.Tensor, *,
             beta: float, weights: torch.Tensor | None = None) -> torch.Tensor:
    """``-(2/beta) E[log sigmoid(beta ((log pi(y_w) - log ref(y_w)) - (log pi(y_l) - log ref(y_l))))]``
    (OpenUnlearning's scaling of the DPO loss) over summed answer log-likelihoods."""
    margin = (win_lp - win_ref_lp) - (lose_lp - lose_ref_lp)
    return reduce_loss(-2.0 / beta * F.logsigmoid(beta * margin), weights)


def replace_answers(batch: dict[str, torch.Tensor], answers: Sequence[Sequence[int]], *, pad_token_id: int
                    ) -> dict[str, torch.Tensor]:
    """The same prompts with new answer token ids (labels on the new answers only), right-padded."""
    labels, ids = batch["labels"], batch["input_ids"]
    rows: list[tuple[list[int], list[int]]] = []
    for i, answer in enumerate(answers):
        scored = (labels[i] != IGNORE_INDEX).nonzero()
        if scored.numel() == 0:
            raise InvalidInputError("a forget sample has no answer tokens to replace")
        rows.append((ids[i, : int(scored[0])].tolist(), [int(t) for t in answer]))
    width = max(len(p) + len(a) for p, a in rows)
    out = {
        "input_ids": torch.full((len(rows), width), pad_token_id, dtype=torch.long),
        "attention_mask": torch.zeros((len(rows), width), dtype=torch.long),
        "labels": torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long),
    }
    for i, (p, a) in enumerate(rows):
        out["input_ids"][i, : len(p) + len(a)] = torch.tensor(p + a)
        out["attention_mask"][i, : len(p) + len(a)] = 1
        out["labels"][i, len(p): len(p) + len(a)] = torch.tensor(a)
    return {k: v.to(ids.device) for k, v in out.items()}


def _records_at(ds: Any, positions: torch.Tensor) -> list[Any]:
    """The records behind forget-set positions, through coreset ``Subset`` layers."""
    idx = positions.tolist()
    while isinstance(ds, Subset):
        idx = [ds.indices[i] for i in idx]
        ds = ds.dataset
    records = getattr(ds, "records", None)
    if records is None:
        raise InvalidInputError("DPO reads preferred answers from the forget records: pass an erasus LMDataset")
    return [records[i] for i in idx]


@register_strategy("dpo")
class DPO(LLMStrategy):
    """DPO unlearning: ``gamma * L_DPO(y_w = preferred, y_l = forget answer) + alpha * NLL(retain)``
    (:func:`dpo_loss`) against the frozen model before unlearning.

    Preferred answers come from the forget records' ``preferred_key`` field (default ``"preferred_answer"``);
    ``tokenizer`` defaults to the forget ``LMDataset``'s. Defaults: ``beta = 0.1``, ``gamma = alpha = 1``,
    AdamW lr 1e-5, 10 epochs (OpenUnlearning).
    """

    llm_defaults = {"lr": 1e-5, "retain_loss": "nll", "beta": 0.1, "gamma": 1.0, "alpha": 1.0, "default_epochs": 10,
                    "tokenizer": None, "preferred_key": "preferred_answer"}

    def _preferred(self, run: Run, positions: torch.Tensor, step: int, preferred_key: str) -> list[str]:
        out = []
        for r in _records_at(run.forget, positions):
            if not isinstance(r, dict) or preferred_key not in r:
                raise InvalidInputError(f"forget records need a {preferred_key!r} field for DPO")
            out.append(str(r[preferred_key]))
        return out

    def _unlearn_lm(self, model: torch.nn.Module, run: Run, *, beta: float, gamma: float, alpha: float,
                    default_epochs: float, tokenizer: Any, preferred_key: str) -> torch.nn.Module:
        tok = tokenizer if tokenizer is not None else dataset_attr(run.forget, "tokenizer")
        if tok is None:
            raise InvalidInputError(f"{self.registry_name} tokenizes the preferred answers: pass tokenizer=")
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        eos = [tok.eos_token_id] if tok.eos_token_id is not None else []
        ref = frozen_reference(model, run)
        forget = run.forget_stream_indexed()
        retain = run.retain_stream() if run.retain is not None else None

        def loss(step: int) -> torch.Tensor:
            lose, w, positions = next(forget)
            texts = self._preferred(run, positions, step, preferred_key)
            win = replace_answers(lose, [tok(t, add_special_tokens=False)["input_ids"] + eos for t in texts],
                                  pad_token_id=int(pad))
            win_ref, lose_ref = ref(lambda m: sequence_log_prob(m, win)), ref(lambda m: sequence_log_prob(m, lose))
            forget_term = dpo_loss(sequence_log_prob(model, win), win_ref, sequence_log_prob(model, lose), lose_ref,
                                   beta=beta, weights=w)
            return gamma * forget_term + self.retain_term(model, run, retain, alpha)

        self.train(model, run, loss, num_steps=run.num_steps(default_epochs), desc=self.registry_name)
        return model


@register_strategy("idk_dpo")
class IdkDPO(DPO):
    """IdkDPO (TOFU, Maini et al. 2024): DPO preferring a refusal, drawn (seeded) from ``refusals`` per sample
    and step, over the forget answer. Defaults as :class:`DPO`."""

    llm_defaults = {**DPO.llm_defaults, "refusals": IDK_ANSWERS}

    def _unlearn_lm(self, model: torch.nn.Module, run: Run, *, refusals: Sequence[str], **options: Any
                    ) -> torch.nn.Module:
        if not refusals or not all(isinstance(r, str) and r for r in refusals):
            raise InvalidInputError("refusals must be a non-empty list of non-empty strings")
        self._refusals = list(refusals)
        return super()._unlearn_lm(model, run, **options)

    def _preferred(self, run: Run, positions: torch.Tensor, step: int, preferred_key: str) -> list[str]:
        pick = torch.randint(0, len(self._refusals), (len(positions),), generator=run.generator)
        return [self._refusals[int(i)] for i in pick]
