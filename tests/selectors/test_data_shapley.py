import itertools
import math

import erasus
import numpy as np
import pytest
import torch
from erasus.errors import InvalidInputError
from erasus.selectors.data_shapley import knn_shapley, tmc_shapley


def _knn_u(subset, x, y, xv, yv, k):
    """Jia et al.'s KNN utility, written from its definition."""
    if not subset:
        return 0.0
    total = 0.0
    for xt, yt in zip(xv, yv):
        d = [np.linalg.norm(x[i] - xt) for i in subset]
        near = [subset[j] for j in np.argsort(d)[:min(k, len(subset))]]
        total += sum(y[i] == yt for i in near) / k
    return total / len(yv)


def _brute_shapley(n, u):
    phi = np.zeros(n)
    for i in range(n):
        others = [j for j in range(n) if j != i]
        for r in range(n):
            for s in itertools.combinations(others, r):
                w = math.factorial(r) * math.factorial(n - r - 1) / math.factorial(n)
                phi[i] += w * (u(sorted(s + (i,))) - u(list(s)))
    return phi


@pytest.fixture
def tiny():
    rng = np.random.default_rng(0)
    return rng.normal(size=(7, 2)), rng.integers(0, 2, 7), rng.normal(size=(3, 2)), rng.integers(0, 2, 3)


@pytest.mark.parametrize("k", [1, 3])
def test_knn_shapley_equals_the_brute_force_shapley_definition(tiny, k):
    x, y, xv, yv = tiny
    ref = _brute_shapley(7, lambda s: _knn_u(s, x, y, xv, yv, k))
    np.testing.assert_allclose(knn_shapley(x, y, xv, yv, neighbors=k), ref, atol=1e-12)
    sel = erasus.select(x, 3, method="data_shapley", neighbors=k, labels=y)  # self-valuation path runs too
    assert len(sel) == 3
    sel = erasus.get_selector("data_shapley", neighbors=k).select(3, features=x, labels=y, val_features=xv,
                                                                   val_labels=yv)
    np.testing.assert_allclose(sel.metadata["scores"], ref, atol=1e-6)
    np.testing.assert_array_equal(sel.indices, np.argsort(-np.asarray(sel.metadata["scores"]), kind="stable")[:3])


def test_self_knn_shapley_values_each_point_against_the_others(tiny):
    x, y, _, _ = tiny
    n = 7
    ref = np.zeros(n)
    for t in range(n):  # point t is the validation point; the game is over the other 6
        others = [i for i in range(n) if i != t]
        phi = _brute_shapley(6, lambda s, o=others, t=t: _knn_u([o[i] for i in s], x, y, x[t:t + 1], y[t:t + 1], 2))
        ref[others] += phi
    np.testing.assert_allclose(knn_shapley(x, y, neighbors=2), ref / n, atol=1e-12)


def test_tmc_shapley_converges_to_exact_values(tiny):
    x, y, xv, yv = tiny
    exact = knn_shapley(x, y, xv, yv, neighbors=3)
    sel = erasus.get_selector("data_shapley", estimator="tmc", utility="knn", neighbors=3, permutations=1500,
                              truncation=0.0, seed=1).select(7, features=x, labels=y, val_features=xv, val_labels=yv)
    est, se = np.asarray(sel.metadata["scores"]), np.asarray(sel.metadata["stderr"])
    assert np.all(np.abs(est - exact) < 4 * se + 1e-9)
    assert np.abs(est - exact).max() < 0.03


def test_tmc_efficiency_truncation_and_determinism():
    rng = np.random.default_rng(3)
    w = rng.normal(size=6)
    u = lambda s: float(np.tanh(w[s].sum()))
    vals, _ = tmc_shapley(u, 6, permutations=50, truncation=0.0, seed=0)
    assert abs(vals.sum() - (u(np.arange(6)) - u(np.arange(0)))) < 1e-12  # efficiency axiom holds per permutation
    np.testing.assert_allclose(tmc_shapley(u, 6, permutations=50, truncation=0.0, seed=0)[0], vals)
    calls = []
    tmc_shapley(lambda s: calls.append(len(s)) or 1.0, 6, permutations=3, truncation=0.5)
    assert max(calls) == 6 and calls.count(1) == 0  # U(prefix) == U(D) everywhere: every scan is truncated at once


def test_tmc_logistic_utility_runs_on_model_embeddings():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    x, y = torch.randn(12, 3), torch.arange(12) % 2
    sel = erasus.get_selector("data_shapley", estimator="tmc", permutations=3).select(
        4, model=model, data=(x, y), val_data=(x[:6], y[:6]))
    with torch.no_grad():
        emb = model[1](model[0](x)).numpy()
    ref = erasus.get_selector("data_shapley", estimator="tmc", permutations=3).select(
        4, features=emb, labels=y, val_features=emb[:6], val_labels=y[:6])
    np.testing.assert_allclose(sel.metadata["scores"], ref.metadata["scores"], atol=1e-12)
    assert sel.metadata["estimator"] == "tmc" and np.any(np.asarray(sel.metadata["scores"]) != 0)


def test_data_shapley_errors(tiny):
    x, y, _xv, _yv = tiny
    with pytest.raises(InvalidInputError, match="validation data"):
        erasus.select(x, 2, method="data_shapley", estimator="tmc", labels=y)
    with pytest.raises(InvalidInputError, match="labels are required"):
        erasus.select(x, 2, method="data_shapley")
    with pytest.raises(InvalidInputError, match="columns"):
        erasus.get_selector("data_shapley").select(2, features=x, labels=y, val_features=np.ones((2, 5)),
                                                   val_labels=np.zeros(2, dtype=int))
    with pytest.raises(InvalidInputError, match="estimator"):
        erasus.get_selector("data_shapley", estimator="beta")
