import erasus
import numpy as np
import pytest
import torch
from erasus.errors import InvalidInputError, MemoryBudgetError
from erasus.selectors.influence import arnoldi_eigen, lissa_inverse_hvp
from scipy.stats import spearmanr

LAM = 0.05


def _fit(x, y, n_total, init=None):
    """argmin sum_i CE_i + n_total * LAM/2 ||theta||^2 (the objective exact influence linearises), float64 L-BFGS."""
    model = torch.nn.Linear(x.shape[1], 2).double()
    if init is not None:
        model.load_state_dict(init)
    opt = torch.optim.LBFGS(model.parameters(), lr=1, max_iter=500, tolerance_grad=1e-12, tolerance_change=1e-14,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        reg = sum((p ** 2).sum() for p in model.parameters())
        loss = torch.nn.functional.cross_entropy(model(x), y, reduction="sum") + n_total * LAM / 2 * reg
        loss.backward()
        return loss

    opt.step(closure)
    return model


@pytest.fixture(scope="module")
def logistic():
    g = torch.Generator().manual_seed(0)
    n, d = 60, 4
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    w = torch.randn(d, generator=g, dtype=torch.float64)
    y = ((x @ w + 0.8 * torch.randn(n, generator=g, dtype=torch.float64)) > 0).long()
    xt = torch.randn(30, d, generator=g, dtype=torch.float64)
    yt = ((xt @ w) > 0).long()
    model = _fit(x, y, n)
    return model, x, y, xt, yt


def test_exact_influence_matches_leave_one_out_retraining(logistic):
    model, x, y, xt, yt = logistic
    n = x.shape[0]
    sel = erasus.get_selector("influence", approximation="exact", damping=LAM).select(
        n, model=model, data=(x, y), target=(xt, yt))
    scores = np.asarray(sel.metadata["scores"])
    with torch.no_grad():
        base = torch.nn.functional.cross_entropy(model(xt), yt).item()
    loo = []
    for i in range(n):
        keep = torch.arange(n) != i
        m = _fit(x[keep], y[keep], n, init=model.state_dict())
        with torch.no_grad():
            loo.append(torch.nn.functional.cross_entropy(m(xt), yt).item() - base)
    rho = spearmanr(scores, loo).statistic
    assert rho > 0.9, rho
    np.testing.assert_allclose(scores / n, loo, atol=5e-3)  # first-order size of the effect too
    assert sel.indices[0] == int(np.argmax(scores))


def _problem(p=8, n=40, seed=0):
    rng = np.random.default_rng(seed)
    g = rng.normal(size=(n, p)) * np.linspace(0.3, 2.0, p)
    h = g.T @ g / n
    return g, h


def test_lissa_matches_exact_inverse_hvp():
    g, h = _problem()
    v = np.random.default_rng(1).normal(size=8)
    damping = 0.1
    exact = np.linalg.solve(h + damping * np.eye(8), v)
    scale = 1.2 * np.linalg.eigvalsh(h).max() + damping
    est = lissa_inverse_hvp(lambda u, b: h @ u, v, damping=damping, scale=scale, depth=3000)
    np.testing.assert_allclose(est, exact, rtol=1e-6)
    # stochastic minibatch Hessians: unbiased, so averaged repeats approach the exact solution
    parts = np.array_split(g, 4)
    hvp = lambda u, b: parts[b].T @ (parts[b] @ u) / parts[b].shape[0]
    noisy = lissa_inverse_hvp(hvp, v, damping=damping, scale=3 * scale, depth=2000, repeats=8, n_batches=4, seed=0)
    assert np.linalg.norm(noisy - exact) / np.linalg.norm(exact) < 0.25


def test_arnoldi_matches_exact_eigendecomposition():
    _, h = _problem(p=12)
    vals, vecs = np.linalg.eigh(h)
    top = np.argsort(-vals)[:5]
    got_vals, got_vecs = arnoldi_eigen(lambda v: h @ v, 12, iterations=12, rank=5, seed=0)
    np.testing.assert_allclose(got_vals, vals[top], rtol=1e-8)
    np.testing.assert_allclose(np.abs(got_vecs.T @ vecs[:, top]), np.eye(5), atol=1e-6)
    v = np.random.default_rng(2).normal(size=12)
    inv_top = vecs[:, top] @ ((vecs[:, top].T @ v) / (vals[top] + 0.01))
    approx = got_vecs @ ((got_vecs.T @ v) / (got_vals + 0.01))
    np.testing.assert_allclose(approx, inv_top, rtol=1e-6, atol=1e-10)


@pytest.mark.parametrize("approximation", ["lissa", "arnoldi"])
def test_approximations_agree_with_exact_influence_on_a_model(logistic, approximation):
    model, x, y, xt, yt = logistic
    exact = erasus.get_selector("influence", damping=LAM).select(10, model=model, data=(x, y), target=(xt, yt))
    # largest eigenvalue of H + damping is ~0.37: scale 0.5 converges at a rate (1 - 0.16 / 0.5) per step
    opts = {"scale": 0.5, "depth": 150} if approximation == "lissa" else {"arnoldi_iterations": 10, "arnoldi_rank": 10}
    approx = erasus.get_selector("influence", approximation=approximation, damping=LAM, **opts).select(
        10, model=model, data=(x, y), target=(xt, yt))
    np.testing.assert_allclose(approx.metadata["scores"], exact.metadata["scores"], rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(approx.indices, exact.indices)


def test_self_influence_from_gradient_features_uses_gauss_newton():
    g, h = _problem(p=6, n=30)
    ref = np.einsum("ip,pq,iq->i", g, np.linalg.inv(h + 0.1 * np.eye(6)), g)
    sel = erasus.select(g, 5, method="influence", damping=0.1)
    np.testing.assert_allclose(sel.metadata["scores"], ref, rtol=1e-4)
    np.testing.assert_array_equal(sel.indices, np.argsort(-ref)[:5])
    arn = erasus.select(g, 5, method="influence", approximation="arnoldi", damping=0.1, arnoldi_iterations=6,
                        arnoldi_rank=6)
    np.testing.assert_allclose(arn.metadata["scores"], ref, rtol=1e-4)


def test_stochastic_lissa_is_deterministic_per_seed():
    g, _ = _problem(p=5, n=40)
    sels = [erasus.select(g, 4, method="influence", approximation="lissa", lissa_batch_size=10, scale=20.0, depth=300,
                          damping=0.1, seed=s) for s in (0, 0, 1)]
    np.testing.assert_array_equal(sels[0].metadata["scores"], sels[1].metadata["scores"])
    assert not np.array_equal(sels[0].metadata["scores"], sels[2].metadata["scores"])


def test_influence_errors(logistic):
    model, x, y, *_ = logistic
    with pytest.raises(InvalidInputError, match="approximation"):
        erasus.get_selector("influence", approximation="kfac")
    with pytest.raises(MemoryBudgetError, match="max_params"):
        erasus.get_selector("influence", max_params=5).select(3, model=model, data=(x, y))
    with pytest.raises(MemoryBudgetError, match="max_grad_entries"):
        erasus.get_selector("influence", approximation="arnoldi", max_grad_entries=100).select(3, model=model, data=(x, y))
    with pytest.raises(InvalidInputError, match="diverged"):
        erasus.select(np.random.default_rng(0).normal(size=(20, 3)) * 10, 2, method="influence",
                      approximation="lissa", scale=0.5, depth=200)
    with pytest.raises(InvalidInputError, match="target_features"):
        erasus.get_selector("influence").select(2, features=np.ones((5, 3)), target_features=np.ones((2, 4)))
    before = [p.detach().clone() for p in model.parameters()]
    erasus.get_selector("influence", damping=LAM).select(3, model=model, data=(x, y))
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_last_layer_influence_matches_a_hand_built_last_layer_hessian():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2)).double()
    x, y = torch.randn(20, 3, dtype=torch.float64), torch.randint(0, 2, (20,))
    xt, yt = x[:5], y[:5]
    with torch.no_grad():
        h = model[1](model[0](x))
    w0, b0 = model[2].weight.detach(), model[2].bias.detach()

    def loss(flat, hx, yy):
        w, b = flat[:8].reshape(2, 4), flat[8:]
        return torch.nn.functional.cross_entropy(hx @ w.T + b, yy)

    flat = torch.cat([w0.reshape(-1), b0])
    hess = torch.autograd.functional.hessian(lambda f: loss(f, h, y), flat)
    grads = torch.stack([torch.autograd.functional.jacobian(lambda f, i=i: loss(f, h[i:i + 1], y[i:i + 1]), flat)
                         for i in range(20)])
    with torch.no_grad():
        ht = model[1](model[0](xt))
    gt = torch.autograd.functional.jacobian(lambda f: loss(f, ht, yt), flat)
    ref = (grads @ torch.linalg.solve(hess + 0.1 * torch.eye(10, dtype=torch.float64), gt)).numpy()
    sel = erasus.get_selector("influence", params="last_layer", damping=0.1).select(
        5, model=model, data=(x, y), target=(xt, yt))
    np.testing.assert_allclose(sel.metadata["scores"], ref, rtol=1e-6, atol=1e-10)


def test_model_path_inputs_are_refused_with_features():
    with pytest.raises(InvalidInputError, match="model path"):
        erasus.get_selector("influence").select(2, features=np.ones((5, 3)), target=(np.ones((2, 3)), np.zeros(2)))


def test_arnoldi_inverts_an_indefinite_hessian_like_the_exact_solve():
    rng = np.random.default_rng(4)
    q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    h = q @ np.diag([3.0, -2.0, 1.5, 0.5, -0.3, 0.1]) @ q.T  # a saddle point's Hessian
    g = rng.normal(size=(10, 6))
    exact = erasus.get_selector("influence", damping=0.05).select(3, features=g, hessian=h)
    arn = erasus.get_selector("influence", approximation="arnoldi", damping=0.05, arnoldi_iterations=6,
                              arnoldi_rank=6).select(3, features=g, hessian=h)
    np.testing.assert_allclose(arn.metadata["scores"], exact.metadata["scores"], rtol=1e-6, atol=1e-8)


def test_lissa_defaults_come_from_the_problem_and_match_the_exact_solve():
    from erasus.selectors.influence import lissa_scale

    rng = np.random.default_rng(0)
    g = rng.normal(size=(40, 6))
    h = g.T @ g / 40
    top = np.linalg.eigvalsh(h + 0.01 * np.eye(6)).max()
    scale = lissa_scale(lambda u, b=None: h @ u, 6, damping=0.01)
    assert top < scale < 2 * top  # above the top eigenvalue (convergence), within the 1.5x margin
    target = rng.normal(size=(5, 6))
    sel = erasus.get_selector("influence", approximation="lissa", damping=0.01, progress=False).select(
        6, features=g, target_features=target)
    ref = erasus.get_selector("influence", approximation="exact", damping=0.01).select(
        6, features=g, target_features=target)
    assert sel.indices.tolist() == ref.indices.tolist()
    exact = np.asarray(ref.metadata["scores"])
    np.testing.assert_allclose(sel.metadata["scores"], exact, rtol=0, atol=1e-3 * np.abs(exact).max())
    lissa = sel.metadata["lissa"]
    assert lissa["scale"] == pytest.approx(scale) and lissa["depth"] == 10_000  # the cap; tol stops it earlier


def test_influence_refuses_a_hessian_that_would_not_fit_before_allocating():
    with pytest.raises(erasus.MemoryBudgetError, match=r"1000000 x 1000000 Hessian \(7.45e\+03 GiB"):
        erasus.select(np.ones((1, 1_000_000), dtype=np.float32), 1, method="influence")


def test_valuation_network_ridge_dual_matches_the_primal_and_runs_on_wide_features():
    import torch

    from erasus.selectors.valuation_network import _ridge

    gen = torch.Generator().manual_seed(0)
    for n, d in ((30, 5), (5, 30)):  # primal and dual branches, against a float64 least-squares reference
        x = torch.randn(n, d, generator=gen, dtype=torch.float64)
        t = torch.randn(n, 2, generator=gen, dtype=torch.float64)
        s = torch.rand(n, generator=gen, dtype=torch.float64)
        aug_x = torch.cat([x * s.sqrt()[:, None], 0.1 * torch.eye(d, dtype=torch.float64)])  # mu = 0.01
        aug_t = torch.cat([t * s.sqrt()[:, None], torch.zeros(d, 2, dtype=torch.float64)])
        ref = torch.linalg.lstsq(aug_x, aug_t).solution
        torch.testing.assert_close(_ridge(x, t, s, 0.01), ref)
    rng = np.random.default_rng(0)
    wide = rng.normal(size=(12, 100_000)).astype(np.float32)
    sel = erasus.get_selector("valuation_network", iterations=3, batch_size=4).select(
        2, features=wide, labels=np.arange(12) % 2)
    assert len(sel) == 2


def test_lissa_tolerance_stops_early_within_the_tolerance():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(8, 8))
    h = a @ a.T / 8 + 0.5 * np.eye(8)
    v = rng.normal(size=8)
    calls = []

    def hvp(u, b=None):
        calls.append(1)
        return h @ u

    scale = 1.5 * np.linalg.eigvalsh(h).max()
    est = lissa_inverse_hvp(hvp, v, damping=0.0, scale=scale, depth=100_000, tol=1e-8)
    exact = np.linalg.solve(h, v)
    assert len(calls) < 2_000  # the cap was 100 000 steps
    assert np.linalg.norm(est - exact) <= 1e-6 * np.linalg.norm(exact)
