"""The ``submodular`` selector against brute-force numpy set functions and a textbook greedy."""

from __future__ import annotations

from typing import Callable

import numpy as np
import pytest
from scipy.spatial.distance import cdist

import erasus
from erasus.errors import InvalidInputError, MemoryBudgetError

GAMMA = 0.8


def rbf(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    return np.exp(-GAMMA * cdist(x, x) ** 2)


def functions(x: np.ndarray) -> dict[str, tuple[dict, Callable[[list[int]], float]]]:
    s = rbf(x)
    n = s.shape[0]
    xf = x.astype(np.float64)

    def logdet(S: list[int]) -> float:
        return float(np.linalg.slogdet(s[np.ix_(S, S)] + 0.7 * np.eye(len(S)))[1]) if S else 0.0

    def pairs(S: list[int]) -> float:
        sub = s[np.ix_(S, S)]
        return float(np.triu(sub, 1).sum())

    return {
        "facility_location": ({}, lambda S: float(s[S].max(axis=0).sum()) if S else 0.0),
        "graph_cut": ({"lambda_": 0.3}, lambda S: float(s[:, S].sum() - 0.3 * s[np.ix_(S, S)].sum())),
        "graph_cut_nonmonotone": ({"lambda_": 1.0}, lambda S: float(s[:, S].sum() - 1.0 * s[np.ix_(S, S)].sum())),
        "saturated_coverage": ({"alpha": 0.15}, lambda S: float(np.minimum(s[:, S].sum(axis=1), 0.15 * s.sum(axis=1)).sum())),
        "feature_based": ({"concave": "sqrt"}, lambda S: float(np.sqrt(xf[S].sum(axis=0)).sum())),
        "feature_based_log": ({"concave": "log"}, lambda S: float(np.log1p(xf[S].sum(axis=0)).sum())),
        "log_determinant": ({"reg": 0.7}, logdet),
        "sum_redundancy": ({}, lambda S: (n - 1) * s.max() * len(S) - pairs(S)),
        "disparity_sum": ({}, lambda S: float(np.triu(1.0 - s[np.ix_(S, S)], 1).sum())),
    }


def textbook_greedy(f: Callable[[list[int]], float], n: int, k: int) -> list[int]:
    picked: list[int] = []
    for _ in range(k):
        base = f(picked)
        gains = np.array([f(picked + [j]) - base if j not in picked else -np.inf for j in range(n)])
        picked.append(int(np.argmax(gains)))  # argmax: first (smallest) index among ties
    return picked


@pytest.fixture
def x() -> np.ndarray:
    return np.random.default_rng(4).random((60, 4)).astype(np.float32)


@pytest.mark.parametrize("name", list(functions(np.zeros((2, 1), np.float32))))
def test_functions_match_brute_force(x: np.ndarray, name: str) -> None:
    opts, f = functions(x)[name]
    fn = name.replace("_nonmonotone", "").replace("_log", "")
    want = textbook_greedy(f, x.shape[0], 7)
    optimizers = ["naive"] if fn == "disparity_sum" else ["naive", "lazy"]
    for optimizer in optimizers:
        sel = erasus.select(x, 7, "submodular", function=fn, similarity="rbf", gamma=GAMMA, optimizer=optimizer, **opts)
        assert sel.indices.tolist() == want, optimizer
        assert sel.objective == pytest.approx(f(want), rel=1e-5, abs=1e-6)
        prefix = [f(want[: t + 1]) for t in range(7)]
        np.testing.assert_allclose(np.cumsum(sel.gains), prefix, rtol=1e-5, atol=1e-6)
        if fn != "facility_location":
            np.testing.assert_array_equal(sel.weights, np.ones(7, np.float32))


def test_mixture_is_the_weighted_sum(x: np.ndarray) -> None:
    fs = functions(x)
    parts = [("facility_location", 1.0), ("log_determinant", 0.5), ("feature_based", 2.0)]

    def f(S: list[int]) -> float:
        return fs["facility_location"][1](S) + 0.5 * fs["log_determinant"][1](S) + 2.0 * fs["feature_based"][1](S)

    want = textbook_greedy(f, x.shape[0], 6)
    for optimizer in ("naive", "lazy"):
        sel = erasus.select(x, 6, "submodular", function="mixture", mixture=parts, gamma=GAMMA, reg=0.7,
                            optimizer=optimizer)
        assert sel.indices.tolist() == want
        assert sel.objective == pytest.approx(f(want), rel=1e-5)


def test_monotone_functions_have_non_negative_non_increasing_gains(x: np.ndarray) -> None:
    for fn, opts in [("facility_location", {}), ("graph_cut", {"lambda_": 0.5}), ("saturated_coverage", {}),
                     ("feature_based", {}), ("sum_redundancy", {})]:
        sel = erasus.select(x, 20, "submodular", function=fn, gamma=GAMMA, **opts)
        assert np.all(sel.gains >= 0), fn
        assert np.all(np.diff(sel.gains) <= 1e-9), fn


def test_stochastic_close_to_lazy() -> None:
    x = np.random.default_rng(5).random((1200, 4)).astype(np.float32)
    for fn in ("saturated_coverage", "feature_based", "log_determinant"):
        lazy = erasus.select(x, 30, "submodular", function=fn)
        sto = erasus.select(x, 30, "submodular", function=fn, optimizer="stochastic", seed=1)
        assert sto.objective >= 0.97 * lazy.objective, fn


def test_per_class(x: np.ndarray) -> None:
    y = np.repeat([0, 1], [40, 20])
    sel = erasus.select(x, 6, "submodular", function="graph_cut", per_class=True, labels=y)
    assert np.bincount(y[sel.indices]).tolist() == [4, 2]


@pytest.mark.parametrize(
    "options, match",
    [
        ({"function": "coverage"}, "graph_cut"),
        ({"optimizer": "fast"}, "stochastic"),
        ({"concave": "cube"}, "sqrt"),
        ({"function": "mixture"}, "mixture="),
        ({"function": "mixture", "mixture": [("mixture", 1.0)]}, "facility_location"),
        ({"function": "mixture", "mixture": [("graph_cut", -1.0)]}, "weight"),
        ({"function": "graph_cut", "mixture": [("graph_cut", 1.0)]}, "only used"),
        ({"alpha": 2.0}, "alpha"),
        ({"reg": 0.0}, "reg"),
        ({"lambda_": -1.0}, "lambda_"),
    ],
)
def test_bad_options(options: dict, match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        erasus.get_selector("submodular", **options)


def test_errors_from_the_core(x: np.ndarray) -> None:
    with pytest.raises(InvalidInputError, match="not submodular"):
        erasus.select(x, 3, "submodular", function="disparity_sum", optimizer="lazy")
    with pytest.raises(InvalidInputError, match="non-negative"):
        erasus.select(x - 0.5, 3, "submodular", function="feature_based")
    with pytest.raises(MemoryBudgetError, match=str(60 * 60 * 4)):
        erasus.select(x, 3, "submodular", function="graph_cut", max_dense_bytes=100)
