"""Herding against an independent float64 numpy moment-matching greedy."""

from __future__ import annotations

import numpy as np
import pytest

import erasus


def herding_reference(x: np.ndarray, k: int) -> tuple[list[int], list[float]]:
    x = x.astype(np.float64)
    mean = x.mean(0)
    total = np.zeros(x.shape[1])
    free = np.ones(x.shape[0], dtype=bool)
    picks, errors = [], []
    for t in range(k):
        err = np.linalg.norm((total + x) / (t + 1) - mean, axis=1)
        err[~free] = np.inf
        i = int(np.argmin(err))
        picks.append(i)
        errors.append(float(err[i]))
        free[i] = False
        total += x[i]
    return picks, errors


def test_matches_reference_argmin() -> None:
    x = np.random.default_rng(0).gamma(2.0, size=(500, 7)).astype(np.float32)
    sel = erasus.select(x, 60, method="herding")
    picks, errors = herding_reference(x, 60)
    assert sel.indices.tolist() == picks
    np.testing.assert_allclose(sel.gains, errors, rtol=1e-9, atol=1e-12)
    assert sel.objective == pytest.approx(errors[-1])
    assert np.all(sel.weights == 1) and sel.method == "herding"


def test_moment_error_beats_random_subsets() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(1000, 16)).astype(np.float32)
    x[:100] += 4.0
    sel = erasus.select(x, 50, method="herding")
    mean = x.astype(np.float64).mean(0)
    random_errors = [np.linalg.norm(x[rng.choice(1000, 50, replace=False)].mean(0) - mean) for _ in range(100)]
    assert sel.objective < 0.5 * float(np.mean(random_errors))
    assert sel.objective == pytest.approx(float(np.linalg.norm(x[sel.indices].astype(np.float64).mean(0) - mean)))


def test_every_row_once_when_k_equals_n() -> None:
    x = np.random.default_rng(2).normal(size=(30, 3))
    sel = erasus.select(x, 30, method="herding")
    assert sorted(sel.indices.tolist()) == list(range(30))
    assert sel.objective == pytest.approx(0.0, abs=1e-6)
