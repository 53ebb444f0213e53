import itertools

import erasus
import numpy as np
import pytest
import torch
from erasus.errors import InvalidInputError
from erasus.features import per_sample_gradients
from scipy.optimize import nnls


def _best_subset(g, target, k):
    best = (np.inf, None)
    for s in itertools.combinations(range(g.shape[0]), k):
        _w, res = nnls(g[list(s)].T, target)
        best = min(best, (res, s), key=lambda t: t[0])
    return best


def test_gradmatch_recovers_a_planted_weighted_subset():
    rng = np.random.default_rng(0)
    g = rng.normal(size=(10, 30))
    target = 3.0 * g[2] + 5.0 * g[7] + 2.0 * g[4]
    sel = erasus.get_selector("gradmatch", lam=0.0).select(3, features=g, target_features=target[None] / 10)
    assert set(sel.indices.tolist()) == {2, 4, 7}
    w = dict(zip(sel.indices.tolist(), sel.weights.tolist()))
    np.testing.assert_allclose([w[2], w[7], w[4]], [3, 5, 2], rtol=1e-4)
    assert sel.metadata["objectives"][-1] < 1e-8 * (target @ target)


@pytest.mark.parametrize("seed", range(4))
def test_gradmatch_matches_brute_force_best_subset_on_tiny_problems(seed):
    rng = np.random.default_rng(seed)
    g = rng.normal(size=(7, 40)) * rng.uniform(0.2, 3.0, size=(7, 1))  # near-orthogonal rows of varied norm
    target = g.sum(0)
    best_res, best_set = _best_subset(g, target, 3)
    sel = erasus.get_selector("gradmatch", lam=0.0).select(3, features=g)
    assert set(sel.indices.tolist()) == set(best_set)
    assert abs(np.sqrt(sel.metadata["objectives"][-1]) - best_res) < 1e-3


@pytest.mark.parametrize("lam", [0.0, 0.1])
def test_gradmatch_objective_never_increases_and_weights_are_nonnegative(lam):
    rng = np.random.default_rng(5)
    g = rng.normal(size=(60, 16)) + 0.3
    sel = erasus.get_selector("gradmatch", lam=lam).select(15, features=g)
    obj = np.asarray(sel.metadata["objectives"])
    w = sel.weights.astype(np.float64)
    direct = np.sum((g[sel.indices].T @ w - g.sum(0)) ** 2) + lam * w @ w
    np.testing.assert_allclose(obj[-1], direct, rtol=1e-4)
    assert np.all(np.diff(obj) <= 1e-9 * obj[0]) and obj[-1] < 0.1 * np.sum(g.sum(0) ** 2)
    assert np.all(sel.weights >= 0) and len(set(sel.indices.tolist())) == 15
    np.testing.assert_array_equal(erasus.select(g, 15, method="gradmatch", lam=lam).indices, sel.indices)


def test_gradmatch_errors():
    with pytest.raises(InvalidInputError, match="lam"):
        erasus.get_selector("gradmatch", lam=-1)
    with pytest.raises(InvalidInputError, match="columns"):
        erasus.get_selector("gradmatch").select(2, features=np.ones((4, 3)), target_features=np.ones((1, 2)))


def test_gradmatch_from_a_model_uses_projected_per_sample_gradients():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU(), torch.nn.Linear(6, 3))
    x, y = torch.randn(30, 4), torch.randint(0, 3, (30,))
    g = per_sample_gradients(model, (x, y), proj_dim=64, seed=2, progress=False)
    ref = erasus.get_selector("gradmatch", seed=2).select(6, features=g)
    sel = erasus.get_selector("gradmatch", seed=2).select(6, model=model, data=(x, y),
                                                           feature_options={"proj_dim": 64})
    np.testing.assert_array_equal(sel.indices, ref.indices)
    np.testing.assert_allclose(sel.weights, ref.weights, rtol=1e-5)


def test_per_class_gradmatch_matches_each_class_sum_within_a_proportional_budget():
    rng = np.random.default_rng(2)
    y = np.repeat([0, 1, 2], [12, 6, 6])
    g = rng.normal(size=(24, 40)) * rng.uniform(0.2, 3.0, size=(24, 1))
    sel = erasus.get_selector("gradmatch", lam=0.0, per_class=True).select(4, features=g, labels=y)
    picked = sel.indices
    assert sorted(np.bincount(y[picked], minlength=3).tolist()) == [1, 1, 2]  # 4 * (12, 6, 6) / 24
    assert np.bincount(y[picked], minlength=3)[0] == 2
    for c in range(3):  # each class's picks are that class's brute-force best subset
        rows = np.flatnonzero(y == c)
        mine = [i for i in picked if y[i] == c]
        _, best_set = _best_subset(g[rows], g[rows].sum(0), len(mine))
        assert set(mine) == {rows[i] for i in best_set}
    total = sum(np.sum((g[[i for i in picked if y[i] == c]].T @ sel.weights[y[picked] == c].astype(float)
                        - g[y == c].sum(0)) ** 2) for c in range(3))
    np.testing.assert_allclose(sel.objective, total, rtol=1e-4)
    import json

    json.dumps(sel.to_dict())
    with pytest.raises(InvalidInputError, match="labels are required"):
        erasus.get_selector("gradmatch", per_class=True).select(3, features=g)
