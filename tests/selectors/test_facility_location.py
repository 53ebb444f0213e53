"""Facility location / CRAIG against a brute-force float64 numpy greedy on small n."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import cdist

import erasus
from erasus.errors import ErasusTypeError, InvalidInputError, MemoryBudgetError, NonFiniteError
from erasus.selectors.facility_location import split_k


def similarity(x: np.ndarray, kind: str, gamma: float | None = None) -> np.ndarray:
    x = x.astype(np.float64)
    d = cdist(x, x)
    if kind == "craig":
        return d.max() - d
    if kind == "rbf":
        return np.exp(-(gamma if gamma is not None else 1.0 / x.shape[1]) * d**2)
    nrm = np.linalg.norm(x, axis=1, keepdims=True)
    return (x @ x.T) / (nrm * nrm.T)


def naive_greedy(s: np.ndarray, k: int) -> tuple[list[int], list[float]]:
    """Textbook greedy on f(S) = sum_i max(0, max_{j in S} s_ij); ties to the smaller index."""
    cur = np.zeros(s.shape[0])
    picked: list[int] = []
    gains: list[float] = []
    for _ in range(k):
        g = np.maximum(s - cur[None, :], 0.0).sum(axis=1)  # row j = candidate j
        g[picked] = -np.inf
        j = int(np.argmax(g))
        picked.append(j)
        gains.append(float(g[j]))
        cur = np.maximum(cur, s[j])
    return picked, gains


def objective(s: np.ndarray, sel: np.ndarray) -> float:
    return float(np.maximum(s[sel].max(axis=0), 0.0).sum())


def clusters(s: np.ndarray, sel: np.ndarray) -> np.ndarray:
    return np.bincount(np.argmax(s[sel], axis=0), minlength=len(sel)).astype(np.float32)


@pytest.fixture
def x() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((120, 6)).astype(np.float32)


@pytest.mark.parametrize("kind", ["craig", "cosine", "rbf"])
@pytest.mark.parametrize("optimizer", ["naive", "lazy"])
def test_dense_matches_brute_force_greedy(x: np.ndarray, kind: str, optimizer: str) -> None:
    s = similarity(x, kind, 0.3)
    want, gains = naive_greedy(s, 12)
    sel = erasus.select(x, 12, "facility_location", similarity=kind, gamma=0.3 if kind == "rbf" else None,
                        optimizer=optimizer)
    assert sel.indices.tolist() == want
    np.testing.assert_allclose(sel.gains, gains, rtol=1e-4)
    assert sel.objective == pytest.approx(objective(s, sel.indices), rel=1e-5)
    np.testing.assert_array_equal(sel.weights, clusters(s, sel.indices))
    assert sel.weights.sum() == x.shape[0] and sel.method == "facility_location"


def test_sparse_knn_matches_brute_force_on_the_knn_similarity(x: np.ndarray) -> None:
    n, kn = x.shape[0], 8
    d = cdist(x.astype(np.float64), x.astype(np.float64))
    nbrs = np.argsort(d, axis=1, kind="stable")[:, :kn]
    dmax = np.take_along_axis(d, nbrs, axis=1).max()
    s = np.zeros((n, n))  # s[j, i]: candidate j covering point i, only when j is among i's kNN
    for i in range(n):
        s[nbrs[i], i] = dmax - d[i, nbrs[i]]
    want, _ = naive_greedy(s, 10)
    for optimizer in ("naive", "lazy"):
        sel = erasus.select(x, 10, "facility_location", neighbors=kn, optimizer=optimizer)
        assert sel.indices.tolist() == want
        assert sel.objective == pytest.approx(objective(s, sel.indices), rel=1e-5)
        # weights: each point's nearest selected element over all of S
        np.testing.assert_array_equal(sel.weights, np.bincount(np.argmin(d[:, sel.indices], axis=1), minlength=10))


def test_knn_graph_equals_brute_force(x: np.ndarray) -> None:
    ids, dist = erasus._core.knn_graph(x, 7)
    d = cdist(x.astype(np.float64), x.astype(np.float64))
    np.testing.assert_array_equal(ids, np.argsort(d, axis=1, kind="stable")[:, :7])
    np.testing.assert_allclose(dist, np.sort(d, axis=1)[:, :7], atol=1e-4)


def test_stochastic_is_close_to_lazy_and_seeded() -> None:
    x = np.random.default_rng(3).standard_normal((1500, 5)).astype(np.float32)
    lazy = erasus.select(x, 30, "facility_location")
    a = erasus.select(x, 30, "facility_location", optimizer="stochastic", seed=5)
    b = erasus.select(x, 30, "facility_location", optimizer="stochastic", seed=5)
    assert a.objective >= 0.97 * lazy.objective
    np.testing.assert_array_equal(a.indices, b.indices)
    assert len(set(a.indices.tolist())) == 30


def test_input_kinds_give_identical_results(x: np.ndarray, tmp_path) -> None:
    import torch

    want = erasus.select(x, 9, "facility_location").indices
    mm = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=np.float32, shape=x.shape)
    mm[:] = x
    np.testing.assert_array_equal(erasus.select(mm, 9, "facility_location").indices, want)
    np.testing.assert_array_equal(erasus.select(np.asfortranarray(x.astype(np.float64)), 9, "facility_location").indices, want)
    np.testing.assert_array_equal(erasus.select(torch.from_numpy(x), 9, "facility_location").indices, want)


def test_thread_count_does_not_change_the_result(x: np.ndarray) -> None:
    before = erasus.get_num_threads()
    try:
        erasus.set_num_threads(1)
        one = erasus.select(x, 10, "facility_location", neighbors=6)
        erasus.set_num_threads(2)
        two = erasus.select(x, 10, "facility_location", neighbors=6)
    finally:
        erasus.set_num_threads(before)
    np.testing.assert_array_equal(one.indices, two.indices)
    np.testing.assert_array_equal(one.gains, two.gains)


def test_craig_per_class_respects_classes(x: np.ndarray) -> None:
    y = np.repeat([0, 1, 2], [60, 40, 20])
    sel = erasus.get_selector("craig").select(12, features=x, labels=y)
    picked = y[sel.indices]
    assert np.bincount(picked).tolist() == [6, 4, 2]
    assert sel.weights.sum() == x.shape[0]
    for c in range(3):
        # each class's weights sum to its size, and its picks equal the brute-force greedy on that class
        assert sel.weights[picked == c].sum() == (y == c).sum()
        rows = np.flatnonzero(y == c)
        want, _ = naive_greedy(similarity(x[rows], "craig"), int((picked == c).sum()))
        assert sel.indices[picked == c].tolist() == rows[want].tolist()


def test_split_k_largest_remainder() -> None:
    assert split_k(np.array([5, 3, 2]), 5).tolist() == [3, 1, 1]
    assert split_k(np.array([98, 1, 1]), 3).tolist() == [1, 1, 1]
    assert split_k(np.array([10, 10]), 7).sum() == 7
    with pytest.raises(InvalidInputError, match="number of classes"):
        split_k(np.array([1, 1, 1]), 2)


def test_dense_budget_error_names_the_bytes(x: np.ndarray) -> None:
    with pytest.raises(MemoryBudgetError, match=str(120 * 120 * 4)) as info:
        erasus.select(x, 5, "facility_location", max_dense_bytes=1000)
    assert "neighbors" in str(info.value)
    # the sparse mode needs no n x n allocation
    assert len(erasus.select(x, 5, "facility_location", max_dense_bytes=1000, neighbors=5)) == 5


@pytest.mark.parametrize(
    "options, match",
    [
        ({"optimizer": "greedy"}, "naive"),
        ({"similarity": "manhattan"}, "craig"),
        ({"epsilon": 0.0}, "epsilon"),
        ({"neighbors": 0}, "neighbors"),
        ({"gamma": -1.0}, "gamma"),
        ({"partitions": 0}, "partitions"),
    ],
)
def test_bad_options(options: dict, match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        erasus.get_selector("facility_location", **options)


def test_bad_inputs(x: np.ndarray) -> None:
    bad = x.copy()
    bad[3, 2] = np.nan
    with pytest.raises(NonFiniteError, match="row 3"):
        erasus.select(bad, 5, "facility_location")
    with pytest.raises(InvalidInputError, match="exceeds"):
        erasus.select(x, 121, "facility_location")
    with pytest.raises(InvalidInputError):
        erasus.select(x, 0, "facility_location")
    with pytest.raises(InvalidInputError, match="2-D"):
        erasus.select(x[0], 1, "facility_location")
    with pytest.raises(ErasusTypeError):
        erasus.select(np.array([["a"]]), 1, "facility_location")
    with pytest.raises(InvalidInputError, match="C-contiguous"):
        erasus._core.facility_location(np.asfortranarray(x), 3)
