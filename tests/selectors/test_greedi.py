"""GreeDi (Mirzasoleiman et al. 2013) for facility location, against a brute-force two-round reference."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import cdist

import erasus


def greedy(s: np.ndarray, k: int) -> list[int]:
    cur = np.zeros(s.shape[1])
    picked: list[int] = []
    for _ in range(k):
        g = np.maximum(s - cur[None, :], 0.0).sum(axis=1)
        g[picked] = -np.inf
        j = int(np.argmax(g))
        picked.append(j)
        cur = np.maximum(cur, s[j])
    return picked


def craig_sim(x: np.ndarray) -> np.ndarray:
    d = cdist(x, x)
    return d.max() - d


def full_value(x: np.ndarray, sel: list[int], dmax: float) -> float:
    return float(np.maximum(dmax - cdist(x, x[sel]).min(axis=1), 0.0).sum())


@pytest.mark.parametrize("m", [2, 3])
def test_greedi_matches_two_round_reference(m: int) -> None:
    x = np.random.default_rng(1).standard_normal((240, 4)).astype(np.float32)
    xd = x.astype(np.float64)
    n, k = x.shape[0], 8
    dmax = cdist(xd, xd).max()
    shards = [np.arange(p * n // m, (p + 1) * n // m) for p in range(m)]
    picks = [rows[greedy(craig_sim(xd[rows]), k)] for rows in shards]
    union = np.concatenate(picks)
    merged = union[greedy(craig_sim(xd[union]), k)].tolist()
    candidates = [merged] + [p.tolist() for p in picks]
    values = [full_value(xd, c, dmax) for c in candidates]
    best = candidates[int(np.argmax(values))]

    sel = erasus.select(x, k, "facility_location", partitions=m)
    assert sel.indices.tolist() == best
    assert sel.objective == pytest.approx(max(values), rel=1e-5)
    assert sel.weights.sum() == n
    np.testing.assert_allclose(np.cumsum(sel.gains)[-1], sel.objective, rtol=1e-9)
    # a distributed answer cannot beat the centralized greedy by much, nor fall far below it
    central = erasus.select(x, k, "facility_location")
    assert sel.objective >= 0.9 * central.objective


def test_greedi_shuffled_shards_are_seeded_and_work_with_knn() -> None:
    x = np.random.default_rng(2).standard_normal((400, 5)).astype(np.float32)
    a = erasus.select(x, 10, "facility_location", partitions=4, shuffle_partitions=True, neighbors=10, seed=3)
    b = erasus.select(x, 10, "facility_location", partitions=4, shuffle_partitions=True, neighbors=10, seed=3)
    np.testing.assert_array_equal(a.indices, b.indices)
    assert len(set(a.indices.tolist())) == 10 and a.weights.sum() == 400
    dmax = cdist(x.astype(np.float64), x.astype(np.float64)).max()
    assert a.objective == pytest.approx(full_value(x.astype(np.float64), a.indices.tolist(), dmax), rel=1e-5)


def test_submodular_greedi_only_for_facility_location() -> None:
    x = np.random.default_rng(0).random((50, 3)).astype(np.float32)
    with pytest.raises(erasus.InvalidInputError, match="facility_location"):
        erasus.select(x, 5, "submodular", function="graph_cut", partitions=2)
