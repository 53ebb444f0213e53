"""Fixtures for the metric tests (material in metric_helpers.py): session-scoped, trained once."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from metric_helpers import Digits, fit, single_thread


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    with single_thread():
        yield


@pytest.fixture(scope="session")
def digits() -> Digits:
    return Digits()


@pytest.fixture(scope="session")
def original(digits: Digits) -> torch.nn.Module:
    """Trained (and overfit) on forget + retain: the model before unlearning."""
    x = torch.cat([digits.forget[0], digits.retain[0]])
    y = torch.cat([digits.forget[1], digits.retain[1]])
    return fit(x, y, seed=1)


@pytest.fixture(scope="session")
def retrained(digits: Digits) -> torch.nn.Module:
    """Trained on retain only: the gold-standard unlearned model."""
    return fit(*digits.retain, seed=2)


@pytest.fixture(scope="session")
def stranger(digits: Digits) -> torch.nn.Module:
    """Trained on data disjoint from forget, retain and test: has never seen any of them."""
    return fit(*digits.other, seed=3)
