import erasus
import numpy as np
import pytest
import torch
from erasus.errors import InvalidInputError
from sklearn.metrics import roc_auc_score


@pytest.fixture(scope="module")
def noisy():
    rng = np.random.default_rng(0)
    n, d = 300, 5
    w = rng.normal(size=d)
    x = rng.normal(size=(n, d))
    y = (x @ w > 0).astype(int)
    flipped = rng.permutation(n)[:60]
    y_noisy = y.copy()
    y_noisy[flipped] = 1 - y_noisy[flipped]
    xv = rng.normal(size=(100, d))
    return x, y_noisy, flipped, xv, (xv @ w > 0).astype(int)


def test_valuation_network_values_clean_samples_above_flipped_labels(noisy):
    x, y, flipped, xv, yv = noisy
    sel = erasus.get_selector("valuation_network", iterations=200, seed=0).select(
        200, features=x, labels=y, val_features=xv, val_labels=yv)
    values = sel.metadata["scores"]
    is_clean = np.ones(len(x), dtype=bool)
    is_clean[flipped] = False
    assert roc_auc_score(is_clean, values) > 0.8  # the known corruption is the reference
    assert len(set(sel.indices.tolist()) & set(flipped.tolist())) < 0.1 * 200


def test_valuation_network_is_deterministic_and_leaves_global_rng_alone(noisy):
    x, y, _, _xv, _yv = noisy
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    a = erasus.get_selector("valuation_network", iterations=20, seed=5).select(10, features=x, labels=y)
    assert torch.equal(state, torch.random.get_rng_state())
    b = erasus.get_selector("valuation_network", iterations=20, seed=5).select(10, features=x, labels=y)
    np.testing.assert_array_equal(a.metadata["scores"], b.metadata["scores"])
    assert a.metadata["validation"] == "held-out 60 samples"


def test_valuation_network_errors(noisy):
    x, y, *_ = noisy
    with pytest.raises(InvalidInputError, match="threshold"):
        erasus.get_selector("valuation_network", threshold=1.5)
    with pytest.raises(InvalidInputError, match="iterations"):
        erasus.get_selector("valuation_network", iterations=0)
    with pytest.raises(InvalidInputError, match="columns"):
        erasus.get_selector("valuation_network").select(3, features=x, labels=y, val_features=np.ones((4, 2)),
                                                        val_labels=np.zeros(4, dtype=int))
