import erasus
import numpy as np
import pytest
from erasus.errors import ErasusTypeError, InvalidInputError, RegistryError
from erasus.selectors.el2n import EL2NSelector
from erasus.selectors.uncertainty import UncertaintySelector


@pytest.fixture
def logits():
    rng = np.random.default_rng(0)
    return rng.normal(size=(20, 4)) * 2, rng.integers(0, 4, 20)


def _ranks(scores):
    return np.argsort(-scores, kind="stable")


def test_borda_and_rrf_fuse_member_rankings(logits):
    z, y = logits
    a = np.asarray(erasus.select(z, 20, method="el2n", labels=y).metadata["scores"])
    b = np.asarray(erasus.select(z, 20, method="uncertainty", measure="entropy").metadata["scores"])
    ra, rb = _ranks(a), _ranks(b)
    borda, rrf = np.zeros(20), np.zeros(20)
    for r in (ra, rb):
        for pos, i in enumerate(r):
            borda[i] += 20 - pos
            rrf[i] += 1 / (60 + pos + 1)
    members = [EL2NSelector(), ("uncertainty", {"measure": "entropy"})]
    sel = erasus.get_selector("voting", selectors=members).select(6, features=z, labels=y)
    np.testing.assert_array_equal(sel.metadata["scores"], borda)
    np.testing.assert_array_equal(sel.indices, _ranks(borda)[:6])
    assert sel.metadata["members"] == ["el2n", "uncertainty"] and sel.method == "voting"
    sel = erasus.get_selector("voting", selectors=members, rule="rrf").select(6, features=z, labels=y)
    np.testing.assert_allclose(sel.metadata["scores"], rrf)
    np.testing.assert_array_equal(sel.indices, _ranks(rrf)[:6])


def test_voting_weights_and_single_member(logits):
    z, y = logits
    only = erasus.select(z, 5, method="uncertainty")
    sel = erasus.get_selector("voting", selectors=[UncertaintySelector(), EL2NSelector()], weights=[1.0, 0.0]).select(
        5, features=z, labels=y)
    np.testing.assert_array_equal(sel.indices, only.indices)
    geo = erasus.get_selector("voting", selectors=["random", "uncertainty"], seed=4).select(5, features=z)
    again = erasus.get_selector("voting", selectors=["random", "uncertainty"], seed=4).select(5, features=z)
    np.testing.assert_array_equal(geo.indices, again.indices)


def test_voting_errors(logits):
    _z, _y = logits
    with pytest.raises(InvalidInputError, match="rule"):
        erasus.get_selector("voting", selectors=["el2n"], rule="condorcet")
    with pytest.raises(InvalidInputError, match="non-empty"):
        erasus.get_selector("voting", selectors=[])
    with pytest.raises(RegistryError, match="no_such"):
        erasus.get_selector("voting", selectors=["no_such"])
    with pytest.raises(ErasusTypeError, match="member"):
        erasus.get_selector("voting", selectors=[3])
    with pytest.raises(InvalidInputError, match="weights"):
        erasus.get_selector("voting", selectors=["el2n"], weights=[1, 2])


def test_voting_routes_per_call_inputs_to_the_members_that_take_them(logits):
    z, y = logits
    rng = np.random.default_rng(1)
    xv, yv = rng.normal(size=(5, 4)), rng.integers(0, 4, 5)
    vote = erasus.get_selector("voting", selectors=["el2n", "data_shapley"])
    sel = vote.select(4, features=z, labels=y, val_features=xv, val_labels=yv)
    ref = erasus.get_selector("data_shapley").select(20, features=z, labels=y, val_features=xv, val_labels=yv)
    np.testing.assert_array_equal(sel.metadata["member_rankings"][1], ref.indices)
    with pytest.raises(InvalidInputError, match="no member"):
        vote.select(4, features=z, labels=y, val_feature=xv)
