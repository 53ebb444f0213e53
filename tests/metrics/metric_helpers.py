"""Test material for the metric tests: digits splits and tiny MLPs (imported by name, like llm_helpers)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch
from erasus.metrics import train_classifier
from sklearn.datasets import load_digits


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Tiny models on shared cores run ~50x faster without intra-op threads fighting over them."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def make_mlp(hidden: int = 64) -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(64, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 10))


def fit(x: torch.Tensor, y: torch.Tensor, *, seed: int = 0, epochs: int = 150) -> torch.nn.Module:
    """A tiny MLP trained to memorise (x, y): no weight decay, many epochs."""
    with single_thread():
        torch.manual_seed(seed)
        model = make_mlp()
        return train_classifier(model, torch.utils.data.TensorDataset(x, y), task="classification", epochs=epochs,
                                lr=3e-3, batch_size=64, seed=seed)


class Digits:
    """Disjoint seeded splits of scikit-learn's digits: forget, retain, test, population (for LiRA shadows)."""

    def __init__(self) -> None:
        x, y = load_digits(return_X_y=True)
        perm = np.random.default_rng(0).permutation(len(y))
        x = torch.tensor(x[perm] / 16.0, dtype=torch.float32)
        y = torch.tensor(y[perm], dtype=torch.long)
        cuts = {"forget": (0, 150), "retain": (150, 450), "test": (450, 750), "population": (750, 1350),
                "other": (1350, 1797)}
        for name, (a, b) in cuts.items():
            setattr(self, name, (x[a:b], y[a:b]))
