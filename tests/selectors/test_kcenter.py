"""k-center against an independent float64 numpy greedy and the brute-force optimal radius."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import erasus
from erasus.errors import InvalidInputError


def distances(x: np.ndarray, c: int, metric: str) -> np.ndarray:
    x = x.astype(np.float64)
    if metric == "euclidean":
        return np.sqrt(((x - x[c]) ** 2).sum(1))
    norms = np.linalg.norm(x, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        d = 1.0 - (x @ x[c]) / (norms * norms[c])
    d[(norms == 0) | (norms[c] == 0)] = 1.0
    return np.maximum(d, 0.0)


def greedy_reference(x: np.ndarray, k: int, metric: str, start: list[int]) -> tuple[list[int], float]:
    """Textbook greedy from the already-selected rows ``start``: k new picks and the final radius."""
    mind = np.full(x.shape[0], np.inf)
    for c in start:
        mind = np.minimum(mind, distances(x, c, metric))
    chosen = set(start)
    picks = []
    for _ in range(k):
        masked = np.where([i in chosen for i in range(x.shape[0])], -np.inf, mind)
        c = int(np.argmax(masked))  # first maximum = smallest index
        picks.append(c)
        chosen.add(c)
        mind = np.minimum(mind, distances(x, c, metric))
    return picks, float(mind.max())


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_matches_textbook_greedy_with_initial(metric: str) -> None:
    x = np.random.default_rng(0).normal(size=(400, 6)).astype(np.float32)
    sel = erasus.select(x, 25, method="kcenter", metric=metric, initial=[3])
    picks, radius = greedy_reference(x, 25, metric, [3])
    assert sel.indices.tolist() == picks
    assert sel.objective == pytest.approx(radius, rel=1e-5, abs=1e-6)
    assert np.all(np.diff(sel.gains) <= 0)
    assert sel.weights.dtype == np.float32 and np.all(sel.weights == 1)
    assert sel.method == "kcenter"


def test_random_start_is_the_first_pick() -> None:
    x = np.random.default_rng(1).normal(size=(300, 4)).astype(np.float32)
    sel = erasus.select(x, 10, method="kcenter", seed=7)
    picks, radius = greedy_reference(x, 9, "euclidean", [int(sel.indices[0])])
    assert sel.indices[1:].tolist() == picks
    assert np.isinf(sel.gains[0]) and sel.objective == pytest.approx(radius, rel=1e-5)
    assert erasus.select(x, 10, method="kcenter", seed=7).indices.tolist() == sel.indices.tolist()
    firsts = {int(erasus.select(x, 1, method="kcenter", seed=s).indices[0]) for s in range(8)}
    assert len(firsts) > 1


def test_initial_rows_are_excluded_and_not_counted() -> None:
    x = np.random.default_rng(2).normal(size=(50, 3)).astype(np.float32)
    sel = erasus.get_selector("kcenter", initial=np.array([4, 9])).select(48, features=x)
    assert sorted(sel.indices.tolist()) == sorted(set(range(50)) - {4, 9})
    assert sel.objective == 0.0
    with pytest.raises(InvalidInputError, match="not in initial"):
        erasus.select(x, 49, method="kcenter", initial=[4, 9])
    with pytest.raises(InvalidInputError, match="out of range"):
        erasus.select(x, 2, method="kcenter", initial=[50])
    with pytest.raises(InvalidInputError, match="out of range"):
        erasus.select(x, 2, method="kcenter", initial=[-1])
    with pytest.raises(InvalidInputError, match="empty"):
        erasus.select(x, 2, method="kcenter", initial=[])
    with pytest.raises(InvalidInputError, match="metric"):
        erasus.select(x, 2, method="kcenter", metric="manhattan")


def test_two_approximation_of_the_optimal_radius() -> None:
    rng = np.random.default_rng(3)
    for _ in range(5):
        x = rng.normal(size=(10, 2)).astype(np.float32)
        sel = erasus.select(x, 3, method="kcenter", seed=int(rng.integers(100)))
        x64 = x.astype(np.float64)
        pair = np.sqrt(((x64[:, None] - x64[None]) ** 2).sum(-1))
        optimal = min(pair[:, list(s)].min(1).max() for s in itertools.combinations(range(10), 3))
        assert sel.objective <= 2 * optimal + 1e-6


def test_clustered_data_with_duplicates_matches_reference() -> None:
    rng = np.random.default_rng(4)
    centers = rng.normal(scale=20, size=(6, 5))
    x = (centers[rng.integers(6, size=2000)] + rng.normal(scale=0.05, size=(2000, 5))).astype(np.float32)
    x[100:110] = x[5]
    sel = erasus.select(x, 40, method="kcenter", initial=[5])
    assert sel.indices.tolist() == greedy_reference(x, 40, "euclidean", [5])[0]


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(2, 40),
    d=st.integers(1, 5),
    seed=st.integers(0, 2**32 - 1),
    data_seed=st.integers(0, 10_000),
)
def test_exact_on_integer_grids_with_ties(n: int, d: int, seed: int, data_seed: int) -> None:
    # Small integers make float32 and float64 distances exact, so even tied distances must break alike.
    x = np.random.default_rng(data_seed).integers(-3, 4, size=(n, d)).astype(np.float32)
    start = data_seed % n
    k = 1 + seed % (n - 1) if n > 1 else 1
    sel = erasus.select(x, k, method="kcenter", initial=[start], seed=seed)
    picks, radius = greedy_reference(x, k, "euclidean", [start])
    assert sel.indices.tolist() == picks
    assert sel.objective == pytest.approx(radius, abs=1e-6)
