"""Causal tracing (Meng et al., "Locating and Editing Factual Associations in GPT", NeurIPS 2022) to find the
blocks that carry the forget facts, then NPO unlearning of only those blocks' MLPs."""

from __future__ import annotations

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

__all__ = ["CausalTracing", "trace_layers"]


def _embedding(model: torch.nn.Module) -> torch.nn.Module:
    emb = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    if emb is None:
        raise InvalidInputError(f"{type(model).__name__} has no get_input_embeddings(); causal tracing corrupts them")
    return emb


@torch.no_grad()
def trace_layers(model: torch.nn.Module, batch: dict[str, torch.Tensor], *, noise: float = 3.0, samples: int = 4,
                 seed: int = 0) -> np.ndarray:
    """Mean over samples of the best indirect effect of each block: ``max_t P(a | corrupted, h_l^t restored)
    - P(a | corrupted)``, with ``P`` the length-normalized answer probability, prompt-token embeddings
    corrupted by Gaussian noise of std ``noise * std(embeddings)`` (ROME's 3 sigma), averaged over ``samples``
    noise draws, and ``h_l^t`` the clean output of block ``l`` at prompt position ``t``. Shape (num_blocks,).
    """
    task = CausalLMTask()
    blocks = decoder_layers(model)
    emb = _embedding(model)
    sigma = noise * float(emb.weight.float().std())
    gen = torch.Generator().manual_seed(seed)
    effects = np.zeros(len(blocks))
    n = batch["input_ids"].shape[0]
    for i in range(n):
        one = {k: v[i:i + 1] for k, v in batch.items()}
        scored = (one["labels"][0] != IGNORE_INDEX).nonzero()
        prompt_len = int(scored[0]) if scored.numel() else 0
        if prompt_len < 1:
            raise InvalidInputError("causal tracing needs prompt tokens to corrupt (QA pairs, not plain text)")
        one = {k: v.repeat(samples, 1) for k, v in one.items()}
        noise_t = torch.randn(samples, prompt_len, emb.weight.shape[1], generator=gen).to(emb.weight.device) * sigma

        def corrupt(_m: torch.nn.Module, _inp: Any, out: torch.Tensor, prompt_len: int = prompt_len,
                    noise_t: torch.Tensor = noise_t) -> torch.Tensor:
            out = out.clone()
            out[:, :prompt_len] += noise_t.to(out.dtype)
            return out

        with activation_hooks(model, list(range(len(blocks))), detach=True) as clean:
            task.outputs(model, one)
            clean = dict(clean)
        handle = emb.register_forward_hook(corrupt)
        try:
            p_corrupt = float(torch.exp(task.log_likelihood(model, one, normalize=True)).mean())
            for layer, block in enumerate(blocks):
                best = 0.0
                for t in range(prompt_len):
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


@register_strategy("causal_tracing")
class CausalTracing(LLMStrategy):
    """Locate then unlearn: rank blocks by :func:`trace_layers` on (up to ``trace_samples``) forget samples,
    keep the ``num_layers`` with the largest indirect effect, and run NPO (``beta``, against the frozen model,
    plus ``alpha`` retain NLL) updating only those blocks' parameters matching ``param_filter`` ("mlp", where
    ROME places factual recall). ``info_["trace_effects"]`` and ``info_["layers"]`` report the tracing.

    Defaults: ``noise = 3`` (x embedding std), ``num_layers = 1``, ``beta = 0.1``, ``alpha = 1``, AdamW lr 1e-5,
    10 epochs.
    """

    llm_defaults = {"lr": 1e-5, "retain_loss": "nll", "noise": 3.0, "noise_samples": 4, "trace_samples": 8, "num_layers": 1,
                    "param_filter": "mlp", "beta": 0.1, "gamma": 1.0, "alpha": 1.0, "default_epochs": 10}

    def _unlearn_lm(self, model: torch.nn.Module, run: Run, *, noise: float, noise_samples: int, trace_samples: int,
                    num_layers: int, param_filter: str, beta: float, gamma: float, alpha: float,
                    default_epochs: float) -> torch.nn.Module:
        blocks = decoder_layers(model)
        if not 1 <= num_layers <= len(blocks):
            raise InvalidInputError(f"num_layers must be in [1, {len(blocks)}], got {num_layers}")
        batch, _ = next(iter(run.forget_epoch(shuffle=False)))
        batch = {k: v[:trace_samples] for k, v in batch.items()}
        was = model.training
        model.eval()
        effects = trace_layers(model, batch, noise=noise, samples=noise_samples, seed=run.seed)
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
