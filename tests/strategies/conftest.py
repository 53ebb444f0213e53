"""Shared fixtures: scikit-learn digits, a tiny MLP trained on it, and the model retrained without the forget set.

Scenario: forget every training sample of class 0 (the retrained model's forget accuracy is 0), so every
method has a clear target to move towards.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import pytest
import torch

FORGET_CLASS = 0


def make_mlp(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))


def train(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *, steps: int = 300, seed: int = 0) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        idx = torch.randint(0, len(x), (128,), generator=g)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()
    return model.eval()


def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


@dataclass
class Digits:
    x_forget: torch.Tensor
    y_forget: torch.Tensor
    x_retain: torch.Tensor
    y_retain: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    original: torch.nn.Module
    retrained: torch.nn.Module

    @property
    def forget(self):
        return (self.x_forget, self.y_forget)

    @property
    def retain(self):
        return (self.x_retain, self.y_retain)

    def model(self) -> torch.nn.Module:
        return copy.deepcopy(self.original)

    def accs(self, model: torch.nn.Module) -> dict[str, float]:
        return {
            "forget": accuracy(model, self.x_forget, self.y_forget),
            "retain": accuracy(model, self.x_retain, self.y_retain),
            "test": accuracy(model, self.x_test, self.y_test),
        }


@pytest.fixture(scope="session")
def digits() -> Digits:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)
    x_tr, x_te = torch.from_numpy(x_tr), torch.from_numpy(x_te)
    y_tr, y_te = torch.from_numpy(y_tr).long(), torch.from_numpy(y_te).long()
    f = y_tr == FORGET_CLASS
    original = train(make_mlp(0), x_tr, y_tr)
    retrained = train(make_mlp(0), x_tr[~f], y_tr[~f])
    return Digits(x_tr[f], y_tr[f], x_tr[~f], y_tr[~f], x_te, y_te, original, retrained)


@pytest.fixture(scope="session")
def mlp_factory():
    """``make_mlp(seed)``: the fixture models' architecture, freshly initialised."""
    return make_mlp
