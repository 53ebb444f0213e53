"""Data-valuation selectors against straightforward references, in the same run, with outputs compared.

* KNN-Shapley (Jia et al. 2019): erasus' vectorised recursion vs the recursion written per validation point.
* Influence inverse-HVPs on gradient features (n x p, decaying spectrum): exact solve vs LiSSA vs Arnoldi
  (top 60 of 256 eigenpairs), with the rank correlation of their scores to exact.

Sizes via ERASUS_BENCH_N (default 4000 training rows). Run with
``pytest benches/python/test_bench_valuation.py --benchmark-only -s``.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from scipy.spatial.distance import cdist
from scipy.stats import spearmanr

import erasus
from erasus.selectors.data_shapley import knn_shapley

N = int(os.environ.get("ERASUS_BENCH_N", "4000"))
M, D, K = 200, 32, 10
P = 256
ROUNDS = int(os.environ.get("ERASUS_BENCH_ROUNDS", "3"))
RESULTS: list[tuple[str, str, float, str]] = []

rng = np.random.default_rng(0)
X, Y = rng.normal(size=(N, D)), rng.integers(0, 10, N)
XV, YV = rng.normal(size=(M, D)), rng.integers(0, 10, M)
# a decaying spectrum, as Hessians of trained networks have (a few large eigenvalues, a long small tail)
G = (rng.normal(size=(N, P)) * 2.0 * 0.98 ** np.arange(P)).astype(np.float32)


def knn_shapley_loop(x, y, xv, yv, k):
    """Jia et al.'s Theorem 1, one validation point at a time, scalar recursion."""
    n = len(x)
    values = np.zeros(n)
    for xt, yt in zip(xv, yv):
        order = np.argsort(cdist(xt[None], x)[0], kind="stable")
        s = np.zeros(n)
        s[order[-1]] = float(y[order[-1]] == yt) / n
        for i in range(n - 2, -1, -1):
            a, b = order[i], order[i + 1]
            s[a] = s[b] + (float(y[a] == yt) - float(y[b] == yt)) / k * min(k, i + 1) / (i + 1)
        values += s
    return values / len(xv)


@pytest.fixture(scope="module", autouse=True)
def report():
    yield
    print(f"\n\nn={N} m={M} d={D} p={P} rounds={ROUNDS}")
    print(f"{'group':14} {'method':18} {'median s':>10}  check")
    for group, name, median, check in RESULTS:
        print(f"{group:14} {name:18} {median:10.3f}  {check}")


@pytest.mark.parametrize("impl", ["erasus", "loop"])
def test_knn_shapley(benchmark, impl):
    fn = (lambda: knn_shapley(X, Y, XV, YV, neighbors=K)) if impl == "erasus" else (
        lambda: knn_shapley_loop(X, Y, XV, YV, K))
    out = benchmark.pedantic(fn, rounds=ROUNDS if impl == "erasus" else 1, iterations=1)
    ref = knn_shapley_loop(X[:300], Y[:300], XV[:20], YV[:20], K)
    np.testing.assert_allclose(knn_shapley(X[:300], Y[:300], XV[:20], YV[:20], neighbors=K), ref, atol=1e-12)
    RESULTS.append(("knn_shapley", impl, benchmark.stats.stats.median, f"sum={out.sum():.6f}"))


@pytest.mark.parametrize("approximation", ["exact", "lissa", "arnoldi"])
def test_influence(benchmark, approximation):
    opts = {"exact": {}, "lissa": {"scale": 5.0, "depth": 300},
            "arnoldi": {"arnoldi_iterations": 120, "arnoldi_rank": 60}}[approximation]
    target = G[:50]
    sel = benchmark.pedantic(lambda: erasus.get_selector("influence", approximation=approximation, damping=0.01,
                                                         **opts).select(100, features=G, target_features=target),
                             rounds=ROUNDS, iterations=1)
    exact = erasus.get_selector("influence", damping=0.01).select(100, features=G, target_features=target)
    rho = spearmanr(sel.metadata["scores"], exact.metadata["scores"]).statistic
    assert rho > (0.99 if approximation == "lissa" else 0.5)  # Arnoldi drops the spectrum below its top 60
    RESULTS.append(("influence", approximation, benchmark.stats.stats.median, f"spearman vs exact {rho:.4f}"))
