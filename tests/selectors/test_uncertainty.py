import erasus
import numpy as np
import pytest
import torch
from erasus.errors import InvalidInputError
from scipy.stats import entropy


@pytest.fixture
def probs():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(30, 4)) * 2
    return z, torch.softmax(torch.as_tensor(z), 1).numpy()


@pytest.mark.parametrize("measure", ["least_confidence", "entropy", "margin"])
def test_uncertainty_measures_match_their_definitions(probs, measure):
    z, p = probs
    if measure == "least_confidence":
        ref = 1 - p.max(1)
    elif measure == "entropy":
        ref = entropy(p, axis=1)
    else:
        s = np.sort(p, 1)
        ref = 1 - (s[:, -1] - s[:, -2])
    sel = erasus.select(z, 5, method="uncertainty", measure=measure)
    np.testing.assert_allclose(sel.metadata["scores"], ref, rtol=1e-6, atol=1e-9)
    np.testing.assert_array_equal(sel.indices, np.argsort(-ref, kind="stable")[:5])
    sel_p = erasus.select(p, 5, method="uncertainty", measure=measure, from_logits=False)
    np.testing.assert_array_equal(sel_p.indices, sel.indices)


def test_uncertainty_from_model():
    torch.manual_seed(0)
    model, x = torch.nn.Linear(3, 4), torch.randn(20, 3)
    with torch.no_grad():
        ref = 1 - torch.softmax(model(x), 1).max(1).values.numpy()
    sel = erasus.get_selector("uncertainty").select(4, model=model, data=(x, torch.zeros(20, dtype=torch.long)))
    np.testing.assert_array_equal(sel.indices, np.argsort(-ref, kind="stable")[:4])


def test_uncertainty_errors(probs):
    with pytest.raises(InvalidInputError, match="measure"):
        erasus.get_selector("uncertainty", measure="variance")
    with pytest.raises(InvalidInputError, match="probabilities"):
        erasus.select(probs[0], 3, method="uncertainty", from_logits=False)
    with pytest.raises(InvalidInputError, match="2 classes"):
        erasus.select(np.ones((4, 1)), 2, method="uncertainty", measure="margin", from_logits=False)
