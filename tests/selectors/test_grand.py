import erasus
import numpy as np
import pytest
import torch
from erasus.errors import InvalidInputError


def test_grand_ranks_by_per_sample_gradient_norm_of_a_logistic_model():
    torch.manual_seed(0)
    x, y = torch.randn(25, 3, dtype=torch.float64), torch.randint(0, 2, (25,))
    model = torch.nn.Linear(3, 2).double()
    grads = []
    for i in range(25):  # independent reference: one backward pass per sample
        model.zero_grad()
        torch.nn.functional.cross_entropy(model(x[i:i + 1]), y[i:i + 1]).backward()
        grads.append(torch.cat([p.grad.reshape(-1) for p in model.parameters()]))
    g = torch.stack(grads).numpy()
    ref = np.linalg.norm(g, axis=1)
    sel = erasus.select(g, 6, method="grand")
    np.testing.assert_array_equal(sel.indices, np.argsort(-ref, kind="stable")[:6])
    np.testing.assert_allclose(sel.metadata["scores"], ref, rtol=1e-5)
    # precomputed norms (n, 1) give the same selection
    np.testing.assert_array_equal(erasus.select(ref[:, None], 6, method="grand").indices, sel.indices)


def test_grand_errors():
    with pytest.raises(InvalidInputError, match="keep"):
        erasus.get_selector("grand", keep="x")
    with pytest.raises(InvalidInputError, match="exceeds"):
        erasus.select(np.ones((3, 2)), 4, method="grand")


def test_grand_from_a_model_uses_exact_gradient_norms():
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.ReLU(), torch.nn.Linear(5, 2))
    x, y = torch.randn(12, 3), torch.randint(0, 2, (12,))
    ref = []
    for i in range(12):
        model.zero_grad()
        torch.nn.functional.cross_entropy(model(x[i:i + 1]), y[i:i + 1]).backward()
        ref.append(torch.sqrt(sum((p.grad ** 2).sum() for p in model.parameters())).item())
    sel = erasus.get_selector("grand", feature_options={"progress": False}).select(4, model=model, data=(x, y))
    np.testing.assert_allclose(sel.metadata["scores"], ref, rtol=1e-4)
