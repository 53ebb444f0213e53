"""Causal tracing (Meng et al., "Locating and Editing Factual Associations in GPT", NeurIPS 2022) to find the
blocks that carry the forget facts, then NPO unlearning of only those blocks' MLPs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ...errors import InvalidInputError
from ...models.llm import activation_hooks, decoder_layers
from ...registry import register_strategy
from ...tasks.causal_lm import IGNORE_INDEX, CausalLMTask
from ..base import Run
from .common import LLMStrategy, frozen_reference, sequence_log_prob
from .npo import npo_loss

__all__ = ["CausalTracing", "subject_token_range", "trace_layers"]


def _embedding(model: torch.nn.Module) -> torch.nn.Module:
    emb = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    if emb is None:
        raise InvalidInputError(f"{type(model).__name__} has no get_input_embeddings(); causal tracing corrupts them")
    return emb


def subject_token_range(tokenizer: Any, ids: Sequence[int], subject: str) -> tuple[int, int]:
    """``[start, end)`` of the tokens of ``ids`` that spell ``subject`` (ROME's ``find_token_range`` in
    ``experiments/causal_trace.py``: decode every token, locate the subject's characters, map them back to
    tokens). Whitespace is ignored when matching, so word-level and SentencePiece tokenizers, whose single-token
    decodes drop the spaces, match as GPT-2's byte-level BPE does."""
    toks = ["".join(tokenizer.decode([int(t)]).split()) for t in ids]
    target = "".join(str(subject).split())
    whole = "".join(toks)
    if not target or target not in whole:
        raise InvalidInputError(f"the subject {subject!r} does not occur in the prompt {tokenizer.decode(list(ids))!r}")
    char_loc, loc = whole.index(target), 0
    start = end = None
    for i, t in enumerate(toks):
        loc += len(t)
        if start is None and loc > char_loc:
            start = i
        if loc >= char_loc + len(target):
            end = i + 1
            break
    if start is None or end is None:
        raise InvalidInputError(f"the subject {subject!r} could not be mapped to tokens")
    return start, end


@torch.no_grad()
def trace_layers(model: torch.nn.Module, batch: dict[str, torch.Tensor], subject_ranges: Sequence[tuple[int, int]], *,
                 noise: float = 3.0, samples: int = 4, seed: int = 0) -> np.ndarray:
    """Mean over samples of the best indirect effect of each block (Meng et al. 2022, ROME's
    ``calculate_hidden_flow``): ``max_t P(a | corrupted, h_l^t restored) - P(a | corrupted)``.

    As ROME: only the subject's token embeddings (``subject_ranges[i]`` of sample ``i``) are corrupted, by
    Gaussian noise of std ``noise * std(subject token embeddings)`` (ROME's ``--noise_level s3`` measures that
    std over the subjects of its data set; here, over the traced samples' subjects), ``samples`` noise draws
    are averaged, and ``h_l^t`` is the clean output of block ``l`` at prompt position ``t``. Deviations, for
    multi-token answers: ``P`` is the length-normalized probability of the whole answer under teacher forcing
    (ROME scores one next token), and each block is summarised by its best prompt position (ROME plots the
    grid). Shape (num_blocks,).
    """
    task = CausalLMTask()
    blocks = decoder_layers(model)
    emb = _embedding(model)
    n = batch["input_ids"].shape[0]
    if len(subject_ranges) != n:
        raise InvalidInputError(f"{n} samples but {len(subject_ranges)} subject token ranges")
    prompt_lens = []
    for i in range(n):
        scored = (batch["labels"][i] != IGNORE_INDEX).nonzero()
        prompt_lens.append(int(scored[0]) if scored.numel() else 0)
        b, e = subject_ranges[i]
        if not 0 <= b < e <= prompt_lens[i]:
            raise InvalidInputError(f"sample {i}: subject tokens [{b}, {e}) must lie inside its prompt "
                                    f"(0 .. {prompt_lens[i]}); causal tracing needs QA pairs with a subject")
    subject_vectors = emb(batch["input_ids"])
    sigma = noise * float(torch.cat([subject_vectors[i, b:e] for i, (b, e) in enumerate(subject_ranges)]).float().std())
    gen = torch.Generator().manual_seed(seed)
    effects = np.zeros(len(blocks))
    for i in range(n):
        one = {k: v[i:i + 1].repeat(samples, 1) for k, v in batch.items()}
        b, e = subject_ranges[i]
        noise_t = torch.randn(samples, e - b, emb.weight.shape[1], generator=gen).to(emb.weight.device) * sigma

        def corrupt(_m: torch.nn.Module, _inp: Any, out: torch.Tensor, b: int = b, e: int = e,
                    noise_t: torch.Tensor = noise_t) -> torch.Tensor:
            out = out.clone()
            out[:, b:e] += noise_t.to(out.dtype)
            return out

        with activation_hooks(model, list(range(len(blocks))), detach=True) as clean:
            task.outputs(model, one)
            clean = dict(clean)
        handle = emb.register_forward_hook(corrupt)
        try:
            p_corrupt = float(torch.exp(task.log_likelihood(model, one, normalize=True)).mean())
            for layer, block in enumerate(blocks):
                best = 0.0
                for t in range(prompt_lens[i]):
                    def restore(_m: torch.nn.Module, _inp: Any, out: Any, t: int = t, layer: int = layer,
                                clean: dict[int, torch.Tensor] = clean) -> Any:
                        h = out[0] if isinstance(out, (tuple, list)) else out
                        h = h.clone()
                        h[:, t] = clean[layer][:, t]
                        return (h, *out[1:]) if isinstance(out, (tuple, list)) else h

                    hk = block.register_forward_hook(restore)
                    try:
                        p = float(torch.exp(task.log_likelihood(model, one, normalize=True)).mean())
                    finally:
                        hk.remove()
                    best = max(best, p - p_corrupt)
                effects[layer] += best / n
        finally:
            handle.remove()
    return effects


def _forget_subjects(run: Run, positions: torch.Tensor, subject_key: str) -> tuple[list[str], Any]:
    """The ``subject_key`` field of the forget records at ``positions`` (through coreset ``Subset`` layers) and
    the data set's tokenizer."""
    ds, pos = run.forget, [int(p) for p in positions]
    while isinstance(ds, torch.utils.data.Subset):
        pos = [int(ds.indices[p]) for p in pos]
        ds = ds.dataset
    records, tokenizer = getattr(ds, "records", None), getattr(ds, "tokenizer", None)
    if records is None or tokenizer is None:
        raise InvalidInputError("causal tracing reads each forget record's subject: pass an LMDataset of records "
                                f"with a {subject_key!r} field")
    missing = [p for p in pos if not isinstance(records[p], Mapping) or not records[p].get(subject_key)]
    if missing:
        raise InvalidInputError(f"forget records {missing} have no {subject_key!r} field; causal tracing (ROME) "
                                "corrupts the subject's tokens, so each traced record names its subject")
    return [str(records[p][subject_key]) for p in pos], tokenizer


@register_strategy("causal_tracing")
class CausalTracing(LLMStrategy):
    """Locate then unlearn: rank blocks by :func:`trace_layers` on (up to ``trace_samples``) forget samples,
    corrupting each one's subject (its record's ``subject_key`` field, default ``"subject"``, located in the
    prompt by :func:`subject_token_range`), keep the ``num_layers`` with the largest indirect effect, and run
    NPO (``beta``, against the frozen model, plus ``alpha`` retain NLL) updating only those blocks' parameters
    matching ``param_filter`` ("mlp", where ROME places factual recall). ``info_["trace_effects"]`` and
    ``info_["layers"]`` report the tracing. The tracing follows kmeng01/rome ``experiments/causal_trace.py``;
    the NPO step on the located blocks is erasus's combination, not a method of the ROME paper.

    Defaults: ``noise = 3`` (x the std of the subject token embeddings, ROME's ``s3``), ``num_layers = 1``,
    ``beta = 0.1``, ``alpha = 1``, AdamW lr 1e-5, 10 epochs.
    """

    data_parallel = False

    llm_defaults = {"lr": 1e-5, "retain_loss": "nll", "noise": 3.0, "noise_samples": 4, "trace_samples": 8,
                    "subject_key": "subject", "num_layers": 1, "param_filter": "mlp", "beta": 0.1, "gamma": 1.0,
                    "alpha": 1.0, "default_epochs": 10}

    def _unlearn_lm(self, model: torch.nn.Module, run: Run, *, noise: float, noise_samples: int, trace_samples: int,
                    subject_key: str, num_layers: int, param_filter: str, beta: float, gamma: float, alpha: float,
                    default_epochs: float) -> torch.nn.Module:
        blocks = decoder_layers(model)
        if not 1 <= num_layers <= len(blocks):
            raise InvalidInputError(f"num_layers must be in [1, {len(blocks)}], got {num_layers}")
        batch, _, positions = next(iter(run.forget_epoch_indexed(shuffle=False)))
        batch = {k: v[:trace_samples] for k, v in batch.items()}
        subjects, tokenizer = _forget_subjects(run, positions[:trace_samples], subject_key)
        ranges: list[tuple[int, int]] = []
        for ids, labels, subject in zip(batch["input_ids"], batch["labels"], subjects):
            scored = (labels != IGNORE_INDEX).nonzero()
            prompt_len = int(scored[0]) if scored.numel() else 0
            ranges.append(subject_token_range(tokenizer, ids[:prompt_len].tolist(), subject))
        was = model.training
        model.eval()
        try:
            effects = trace_layers(model, batch, ranges, noise=noise, samples=noise_samples, seed=run.seed)
        finally:
            model.train(was)
        chosen = sorted(int(i) for i in np.argsort(-effects, kind="stable")[:num_layers])
        self.info_.update(trace_effects=effects.tolist(), layers=chosen)
        params = [p for i in chosen for name, p in blocks[i].named_parameters() if param_filter in name and p.requires_grad]
        if not params:
            raise InvalidInputError(f"no trainable parameters matching {param_filter!r} in blocks {chosen}")
        ref = frozen_reference(model, run)
        forget = run.forget_stream()
        retain = run.retain_stream() if run.retain is not None else None

        def loss(_: int) -> torch.Tensor:
            fb, w = next(forget)
            ref_lp = ref(lambda m: sequence_log_prob(m, fb))
            return gamma * npo_loss(sequence_log_prob(model, fb), ref_lp, beta=beta, weights=w) + self.retain_term(
                model, run, retain, alpha)

        self.train(model, run, loss, num_steps=run.num_steps(default_epochs), desc="NPO on traced layers",
                   optimizer=run.make_optimizer(params))
        return model
