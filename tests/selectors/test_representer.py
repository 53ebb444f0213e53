import erasus
import numpy as np
import pytest
import torch
from erasus.errors import InvalidInputError


@pytest.fixture
def feats():
    rng = np.random.default_rng(0)
    f = rng.normal(size=(40, 5))
    y = (f[:, 0] + 0.5 * rng.normal(size=40) > 0).astype(int) + (f[:, 1] > 1).astype(int)
    return f, y, rng.normal(size=(6, 5))


def test_representer_decomposition_reproduces_the_refit_predictions(feats):
    f, y, ft = feats
    l2 = 0.01
    sel = erasus.get_selector("representer", l2=l2).select(5, features=f, labels=y)
    w, alpha = np.asarray(sel.metadata["head"]), np.asarray(sel.metadata["alphas"])
    assert sel.metadata["stationarity"] < 1e-6
    # independent check of the fit: torch float64 gradient of the regularised objective at W is ~0
    wt = torch.tensor(w, requires_grad=True)
    obj = torch.nn.functional.cross_entropy(torch.tensor(f) @ wt.T, torch.tensor(y)) + l2 * (wt ** 2).sum()
    obj.backward()
    assert wt.grad.abs().max() < 1e-6
    # Theorem 3.1: Phi(x_t) = sum_i alpha_i f_i^T f_t
    np.testing.assert_allclose((alpha.T @ (f @ ft.T)).T, ft @ w.T, atol=1e-5)
    ref = np.abs(alpha[np.arange(40), y])
    np.testing.assert_allclose(sel.metadata["scores"], ref)
    np.testing.assert_array_equal(sel.indices, np.argsort(-ref, kind="stable")[:5])


def test_representer_target_scores_are_contributions_to_target_logits(feats):
    f, y, ft = feats
    sel = erasus.get_selector("representer", l2=0.01).select(5, features=f, labels=y, target_features=ft)
    alpha, w = np.asarray(sel.metadata["alphas"]), np.asarray(sel.metadata["head"])
    c = (ft @ w.T).argmax(1)
    ref = np.array([np.mean([alpha[i, c[t]] * f[i] @ ft[t] for t in range(6)]) for i in range(40)])
    np.testing.assert_allclose(sel.metadata["scores"], ref, atol=1e-6)


def test_representer_from_a_model_uses_its_last_layer(feats):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3, bias=False))
    x, y = torch.randn(30, 3), torch.randint(0, 3, (30,))
    sel = erasus.get_selector("representer", l2=0.05, refit=False).select(4, model=model, data=(x, y))
    with torch.no_grad():
        h = model[1](model[0](x)).double()
        logits = model(x).double()
    ref = -(torch.softmax(logits, 1) - torch.nn.functional.one_hot(y, 3)) / (2 * 0.05 * 30)
    np.testing.assert_allclose(sel.metadata["alphas"], ref.numpy(), atol=1e-6)
    np.testing.assert_allclose(sel.metadata["scores"], ref[torch.arange(30), y].abs().numpy(), atol=1e-6)
    assert h.shape == (30, 5)


def test_representer_errors(feats):
    f, y, _ = feats
    with pytest.raises(InvalidInputError, match="l2"):
        erasus.get_selector("representer", l2=0)
    with pytest.raises(InvalidInputError, match="logits"):
        erasus.get_selector("representer", refit=False).select(3, features=f, labels=y)
    with pytest.raises(InvalidInputError, match="head"):
        erasus.get_selector("representer").select(3, features=f, labels=y, head=np.zeros((3, 2)))
