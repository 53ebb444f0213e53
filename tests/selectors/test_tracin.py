import erasus
import numpy as np
import pytest
import torch
from erasus.errors import InvalidInputError
from scipy.stats import spearmanr


def _loop_grads(model, x, y):
    rows = []
    for i in range(len(x)):
        model.zero_grad()
        torch.nn.functional.cross_entropy(model(x[i:i + 1]), y[i:i + 1]).backward()
        rows.append(torch.cat([p.grad.reshape(-1) for p in model.parameters()]).clone())
    return torch.stack(rows).double().numpy()


@pytest.fixture(scope="module")
def run():
    """Three checkpoints of a small MLP trained by SGD with a decaying learning rate."""
    torch.manual_seed(0)
    x, y = torch.randn(24, 5), torch.randint(0, 3, (24,))
    xt, yt = torch.randn(6, 5), torch.randint(0, 3, (6,))
    model = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    ckpts, lrs = [], [0.5, 0.2, 0.1]
    for lr in lrs:
        opt = torch.optim.SGD(model.parameters(), lr=lr)
        for _ in range(5):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
        ckpts.append(torch.nn.Sequential(*[type(m)(*([m.in_features, m.out_features] if hasattr(m, "in_features") else []))
                                           for m in model]))
        ckpts[-1].load_state_dict(model.state_dict())
    return ckpts, lrs, x, y, xt, yt


def test_tracin_is_the_lr_weighted_sum_of_gradient_dot_products(run):
    ckpts, lrs, x, y, xt, yt = run
    g = [_loop_grads(m, x, y) for m in ckpts]
    gt = [_loop_grads(m, xt, yt) for m in ckpts]
    ref = np.zeros(24)
    for t in range(3):
        for i in range(24):
            ref[i] += lrs[t] * sum(g[t][i] @ gt[t][j] for j in range(6)) / 6
    sel = erasus.get_selector("tracin", learning_rates=lrs).select(5, features=g, target_features=gt)
    np.testing.assert_allclose(sel.metadata["scores"], ref, rtol=1e-9)
    np.testing.assert_array_equal(sel.indices, np.argsort(-ref, kind="stable")[:5])
    self_ref = sum(lr * (gg ** 2).sum(1) for lr, gg in zip(lrs, g))
    np.testing.assert_allclose(erasus.get_selector("tracin", learning_rates=lrs).select(
        5, features=np.stack(g)).metadata["scores"], self_ref, rtol=1e-9)


def test_tracin_on_checkpoints_uses_projected_gradients(run):
    ckpts, lrs, x, y, xt, yt = run
    exact = erasus.get_selector("tracin", learning_rates=lrs).select(
        5, features=[_loop_grads(m, x, y) for m in ckpts], target_features=[_loop_grads(m, xt, yt) for m in ckpts])
    sel = erasus.get_selector("tracin", learning_rates=lrs, proj_dim=2048, seed=3).select(
        5, model=ckpts, data=(x, y), target=(xt, yt))
    assert spearmanr(sel.metadata["scores"], exact.metadata["scores"]).statistic > 0.9
    again = erasus.get_selector("tracin", learning_rates=lrs, proj_dim=2048, seed=3).select(
        5, model=ckpts, data=(x, y), target=(xt, yt))
    np.testing.assert_array_equal(again.metadata["scores"], sel.metadata["scores"])


def test_tracin_errors():
    g = np.ones((2, 4, 3))
    with pytest.raises(InvalidInputError, match="learning rates"):
        erasus.get_selector("tracin", learning_rates=[1.0]).select(2, features=g)
    with pytest.raises(InvalidInputError, match="same shape"):
        erasus.get_selector("tracin").select(2, features=[np.ones((4, 3)), np.ones((4, 2))])
    with pytest.raises(InvalidInputError, match="target_features"):
        erasus.get_selector("tracin").select(2, features=g, target_features=[np.ones((2, 3))])
