import erasus
import numpy as np
import pytest
import torch
from erasus.errors import InvalidInputError


def _autograd_greedy(f, y, fv, yv, w, b, k, eta):
    """Reference: the same greedy with every gradient from torch autograd (float64)."""
    f, fv = torch.tensor(f), torch.tensor(fv)
    y, yv = torch.tensor(y), torch.tensor(yv)
    w0, b0 = torch.tensor(w), torch.tensor(b)

    def grads(w, b, x, t):
        w, b = w.clone().requires_grad_(True), b.clone().requires_grad_(True)
        torch.nn.functional.cross_entropy(x @ w.T + b, t).backward()
        return w.grad, b.grad

    train = [grads(w0, b0, f[i:i + 1], y[i:i + 1]) for i in range(len(f))]
    w_s, b_s, chosen = w0.clone(), b0.clone(), []
    for _ in range(k):
        gw, gb = grads(w_s, b_s, fv, yv)
        gains = [(-np.inf if i in chosen else float((tw * gw).sum() + (tb * gb).sum())) for i, (tw, tb) in enumerate(train)]
        e = int(np.argmax(gains))
        chosen.append(e)
        w_s, b_s = w_s - eta * train[e][0], b_s - eta * train[e][1]
    return chosen


def test_glister_greedy_matches_an_autograd_reference():
    rng = np.random.default_rng(0)
    f, y = rng.normal(size=(25, 4)), rng.integers(0, 3, 25)
    fv, yv = rng.normal(size=(10, 4)), rng.integers(0, 3, 10)
    w, b = rng.normal(size=(3, 4)) * 0.3, rng.normal(size=3) * 0.1
    sel = erasus.get_selector("glister", eta=0.5).select(6, features=f, labels=y, val_features=fv, val_labels=yv,
                                                         head=(w, b))
    assert sel.indices.tolist() == _autograd_greedy(f, y, fv, yv, w, b, 6, 0.5)
    losses = np.asarray(sel.metadata["val_losses"])
    assert losses[-1] < losses[0]  # the greedy steps lower the validation loss
    assert np.all(sel.gains > 0)


def test_glister_from_a_model(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    x, y = torch.randn(20, 3), torch.randint(0, 2, (20,))
    xv, yv = torch.randn(8, 3), torch.randint(0, 2, (8,))
    sel = erasus.get_selector("glister", eta=0.2).select(5, model=model, data=(x, y), val_data=(xv, yv))
    with torch.no_grad():
        f, fv = model[1](model[0](x)).double().numpy(), model[1](model[0](xv)).double().numpy()
    w, b = model[2].weight.detach().double().numpy(), model[2].bias.detach().double().numpy()
    assert sel.indices.tolist() == _autograd_greedy(f, y.numpy(), fv, yv.numpy(), w, b, 5, 0.2)


def test_glister_errors():
    with pytest.raises(InvalidInputError, match="eta"):
        erasus.get_selector("glister", eta=0)
    with pytest.raises(InvalidInputError, match="val_features"):
        erasus.get_selector("glister").select(2, features=np.ones((4, 3)), labels=np.zeros(4, dtype=int),
                                              val_features=np.ones((2, 2)), val_labels=np.zeros(2, dtype=int))
    with pytest.raises(InvalidInputError, match="head"):
        erasus.get_selector("glister").select(2, features=np.ones((4, 3)), labels=np.array([0, 1, 2, 3]),
                                              head=np.zeros((2, 3)))
