import erasus
import numpy as np
import pytest
from erasus.errors import InvalidInputError
from sklearn.ensemble import IsolationForest


def test_upcore_drops_isolation_forest_outliers():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 4))
    x[[3, 17, 42]] += 12.0  # planted outliers
    sel = erasus.select(x, 50, method="upcore", seed=3)
    assert not {3, 17, 42} & set(sel.indices.tolist())
    ref = IsolationForest(random_state=3).fit(x.astype(np.float32)).score_samples(x.astype(np.float32))
    np.testing.assert_array_equal(sel.indices, np.argsort(-ref, kind="stable")[:50])
    again = erasus.select(x, 50, method="upcore", seed=3)
    np.testing.assert_array_equal(again.indices, sel.indices)


def test_upcore_errors():
    with pytest.raises(InvalidInputError, match="n_estimators"):
        erasus.get_selector("upcore", n_estimators=0)
    x = np.ones((5, 2))
    x[0, 0] = np.nan
    with pytest.raises(InvalidInputError, match="NaN"):
        erasus.select(x, 2, method="upcore")
