"""The random and full baselines."""

from __future__ import annotations

import numpy as np
import pytest

import erasus
from erasus.errors import InvalidInputError


def test_random_is_a_seeded_uniform_subset() -> None:
    x = np.zeros((100, 2), dtype=np.float32)
    a = erasus.select(x, 30, method="random", seed=5)
    assert len(set(a.indices.tolist())) == 30 and a.indices.min() >= 0 and a.indices.max() < 100
    assert np.all(a.weights == 1) and a.method == "random"
    assert a.indices.tolist() == erasus.select(x, 30, method="random", seed=5).indices.tolist()
    assert a.indices.tolist() != erasus.select(x, 30, method="random", seed=6).indices.tolist()
    counts = np.zeros(100)
    for s in range(400):
        counts[erasus.select(x, 10, method="random", seed=s).indices] += 1
    # Each row is picked with probability 0.1: 40 expected in 400 draws, sd 6.
    assert counts.min() > 10 and counts.max() < 75


def test_full_returns_every_row() -> None:
    x = np.ones((12, 3))
    for kwargs in ({}, {"k": 12}, {"k": 3}, {"ratio": 0.5}):
        sel = erasus.get_selector("full").select(features=x, **kwargs)
        assert sel.indices.tolist() == list(range(12)) and np.all(sel.weights == 1)
    with pytest.raises(InvalidInputError):
        erasus.select(x, 13, method="full")


def test_random_computes_no_features_from_a_model() -> None:
    """random only reads the row count: selecting from a model must not run it (it can be a 7B LLM)."""
    import torch

    class Exploding(torch.nn.Module):
        def forward(self, *args, **kwargs):
            raise AssertionError("the model was run")

    data = torch.utils.data.TensorDataset(torch.zeros(50, 3), torch.zeros(50, dtype=torch.long))
    want = erasus.select(np.zeros((50, 1), dtype=np.float32), 5, method="random", seed=3).indices.tolist()
    sel = erasus.get_selector("random", seed=3).select(5, model=Exploding(), data=data)
    assert sel.indices.tolist() == want
    unlearner = erasus.ErasusUnlearner(Exploding(), strategy="gradient_ascent", selector="random", prune_ratio=0.1,
                                       seed=3)
    picked, _ = unlearner.select(data)
    assert picked.indices.tolist() == want
