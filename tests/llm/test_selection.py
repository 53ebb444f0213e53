"""Coreset selection for text: projected per-sample gradients of a causal LM feed the Rust selectors."""

from __future__ import annotations

import erasus
import numpy as np
import torch
from erasus.data import subset
from erasus.data.llm import LMDataset
from erasus.features import per_sample_gradients
from erasus.registry import get_strategy
from erasus.tasks.causal_lm import CausalLMTask
from llm_helpers import FORGET


def test_kronecker_gradient_coreset_of_a_forget_set(memorised, tokenizer):
    model, _, retain = memorised
    # every QA pair twice: a good coreset of 4 keeps one copy of each fact
    forget = LMDataset([{"prompt": q, "answer": a} for q, a in FORGET + FORGET], tokenizer, max_length=32)
    feats = per_sample_gradients(model, forget, projection="kronecker", proj_dim=64, seed=0, batch_size=8,
                                 progress=False)
    assert feats.shape == (8, 64) and torch.isfinite(feats).all()
    torch.testing.assert_close(feats[:4], feats[4:], rtol=1e-4, atol=1e-6)  # identical samples, identical features

    sel = erasus.select(feats.numpy(), 4, method="kcenter", seed=0)
    assert sorted(int(i) % 4 for i in sel.indices) == [0, 1, 2, 3]

    craig = erasus.select(feats.numpy(), 4, method="craig", seed=0)
    assert float(np.sum(craig.weights)) == 8.0 and sorted(int(i) % 4 for i in craig.indices) == [0, 1, 2, 3]

    core = subset(forget, craig.indices)
    out = get_strategy("npo", lr=1e-3, alpha=10.0, batch_size=4).unlearn(
        model=model, forget_data=core, retain_data=retain, weights=craig.weights, steps=15, progress=False)
    task = CausalLMTask()
    with torch.no_grad():
        before = torch.exp(-task.per_sample_loss(model, forget.batch)).mean()
        after = torch.exp(-task.per_sample_loss(out, forget.batch)).mean()
    assert after < 0.5 * before  # forgetting the coreset forgot the whole (duplicated) forget set
