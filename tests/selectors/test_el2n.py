import erasus
import numpy as np
import pytest
import torch
from erasus.errors import InvalidInputError


def _reference(logits, y):
    p = torch.softmax(torch.as_tensor(logits, dtype=torch.float64), dim=1)
    return torch.linalg.vector_norm(p - torch.nn.functional.one_hot(torch.as_tensor(y), p.shape[1]).double(), dim=1).numpy()


def test_el2n_keeps_highest_error_norms():
    rng = np.random.default_rng(0)
    logits, y = rng.normal(size=(40, 5)) * 3, rng.integers(0, 5, 40)
    ref = _reference(logits, y)
    sel = erasus.select(logits, 7, method="el2n", labels=y)
    np.testing.assert_array_equal(sel.indices, np.argsort(-ref, kind="stable")[:7])
    np.testing.assert_allclose(sel.metadata["scores"], ref, rtol=1e-5)
    assert sel.method == "el2n" and np.all(sel.weights == 1)
    easy = erasus.select(logits, 7, method="el2n", labels=y, keep="easiest")
    np.testing.assert_array_equal(easy.indices, np.argsort(ref, kind="stable")[:7])


def test_el2n_from_models_averages_over_runs():
    torch.manual_seed(0)
    x, y = torch.randn(30, 4), torch.randint(0, 3, (30,))
    models = [torch.nn.Linear(4, 3) for _ in range(2)]
    with torch.no_grad():
        ref = np.mean([_reference(m(x), y) for m in models], axis=0)
    sel = erasus.get_selector("el2n").select(5, model=models, data=(x, y))
    np.testing.assert_allclose(sel.metadata["scores"], ref, rtol=1e-5)
    assert all(m.training for m in models)  # caller's mode restored


def test_el2n_errors():
    with pytest.raises(InvalidInputError, match="labels are required"):
        erasus.select(np.zeros((4, 3)), 2, method="el2n")
    with pytest.raises(InvalidInputError, match="only 3 classes"):
        erasus.select(np.zeros((4, 3)), 2, method="el2n", labels=np.array([0, 1, 2, 3]))
    with pytest.raises(InvalidInputError, match="keep"):
        erasus.get_selector("el2n", keep="middle")


def test_unknown_per_call_inputs_are_refused():
    with pytest.raises(InvalidInputError, match="unexpected inputs"):
        erasus.get_selector("el2n").select(2, features=np.zeros((4, 3)), labels=np.zeros(4, dtype=int),
                                           val_features=np.zeros((2, 3)))
    with pytest.raises(InvalidInputError, match="val_features, val_labels, val_data"):
        erasus.get_selector("data_shapley").select(2, features=np.zeros((4, 3)), labels=np.zeros(4, dtype=int),
                                                   val_featres=np.zeros((2, 3)))
