"""certified_newton (Zhang et al., ICML 2024) against float64 references: the LiSSA step against the exact
Newton step -(H + lam I)^{-1} g, the noise calibration in closed form, the norm constraint, the certificate."""

from __future__ import annotations

import math

import erasus
import pytest
import torch
from erasus.certification import train_norm_constrained, verify_certified_removal
from erasus.strategies.certified_newton import parameter_norm


def _data(n=120, d=4, c=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    return x, y % c


def _linear(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Linear(4, 3)


def _exact_newton_step(model, x, y, wd, lam):
    """-(H + lam I)^{-1} (grad L + wd w) of the mean cross-entropy, float64, with torch.autograd.functional."""
    w0 = torch.cat([model.weight.detach().reshape(-1), model.bias.detach()]).double()

    def loss(w):
        weight, bias = w[:12].reshape(3, 4), w[12:]
        return torch.nn.functional.cross_entropy(x.double() @ weight.T + bias, y)

    g = torch.autograd.functional.jacobian(loss, w0) + wd * w0
    h = torch.autograd.functional.hessian(loss, w0) + lam * torch.eye(15, dtype=torch.float64)
    return -torch.linalg.solve(h, g)


def test_lissa_step_matches_the_exact_newton_step_and_noise_is_negligible_when_the_bound_is():
    x, y = _data()
    model = _linear()
    wd, gamma = 5e-4, 1.0
    # lam_min huge makes Delta (hence sigma) ~1e-9: what is left is the LiSSA step itself
    s = erasus.get_strategy("certified_newton", hessian_lipschitz=0.0, lam_min=1e10, weight_decay_train=wd,
                            gamma=gamma, s1=4, s2=150, scale=4.0, unlearn_batch_size=120, norm_bound=10.0)
    out = s.unlearn(model=model, forget_data=(x[:10], y[:10]), retain_data=(x[10:], y[10:]), progress=False, seed=0)
    step = torch.cat([(out.weight - model.weight).detach().reshape(-1), (out.bias - model.bias).detach()]).double()
    ref = _exact_newton_step(model, x[10:], y[10:], wd, wd + gamma)
    assert s.info_["sigma"] < 1e-7
    # stochastic Hessian-vector products (batches drawn with replacement) leave a few percent of error
    assert torch.linalg.vector_norm(step - ref) <= 0.1 * torch.linalg.vector_norm(ref)


def test_noise_is_calibrated_to_theorem_3_4_and_the_certificate_verifies():
    x, y = _data()
    model = _linear()
    c_norm, m_lip, wd, gamma, lam_min, eps, delta = 10.0, 0.5, 5e-4, 0.01, 2.0, 0.5, 1e-5
    s = erasus.get_strategy("certified_newton", hessian_lipschitz=m_lip, lam_min=lam_min, norm_bound=c_norm,
                            weight_decay_train=wd, gamma=gamma, epsilon=eps, delta=delta, s1=1, s2=5, scale=10.0)
    out = s.unlearn(model=model, forget_data=(x[:10], y[:10]), retain_data=(x[10:], y[10:]), progress=False)
    lam = wd + gamma
    bound = 2 * c_norm * (m_lip * c_norm + lam) / (lam + lam_min)
    sigma = bound * math.sqrt(2 * math.log(1.25 / delta)) / eps
    assert s.info_["bound"] == pytest.approx(bound) and s.info_["sigma"] == pytest.approx(sigma)
    cert = s.certificate_
    assert out.certificate is cert and cert.mechanism == "zhang2024_newton_lissa"
    assert cert.epsilon == eps and cert.budget == pytest.approx(bound) and cert.removals == 10
    assert "M=0.5" in cert.statement and "LiSSA error" in cert.statement
    assert verify_certified_removal(out, cert, (x[10:], y[10:]))
    with pytest.raises(erasus.certification.CertificateMismatchError):
        verify_certified_removal(model, cert, (x[10:], y[10:]))
    # a user-fixed noise_std gives the epsilon it implies
    s2 = erasus.get_strategy("certified_newton", hessian_lipschitz=m_lip, lam_min=lam_min, norm_bound=c_norm,
                             weight_decay_train=wd, gamma=gamma, noise_std=2 * sigma, delta=delta, s1=1, s2=5)
    s2.unlearn(model=model, forget_data=(x[:10], y[:10]), retain_data=(x[10:], y[10:]), progress=False)
    assert s2.certificate_.epsilon == pytest.approx(eps / 2)


def test_noise_comes_from_os_entropy_unless_seeded():
    x, y = _data()
    model = _linear()
    s = erasus.get_strategy("certified_newton", hessian_lipschitz=0.1, lam_min=1.0, s1=1, s2=3, scale=10.0)
    kw = dict(model=model, forget_data=(x[:10], y[:10]), retain_data=(x[10:], y[10:]), progress=False)
    a, b = s.unlearn(**kw), s.unlearn(**kw)
    assert not torch.equal(a.weight, b.weight)
    assert torch.equal(s.unlearn(seed=3, **kw).weight, s.unlearn(seed=3, **kw).weight)


def test_refuses_before_any_work_without_its_assumptions():
    x, y = _data()
    model = _linear()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    kw = dict(model=model, forget_data=(x[:10], y[:10]), retain_data=(x[10:], y[10:]), progress=False)
    with pytest.raises(erasus.InvalidInputError, match="hessian_lipschitz"):
        erasus.get_strategy("certified_newton").unlearn(**kw)
    with torch.no_grad():
        big = _linear()
        big.weight.mul_(100.0)
    with pytest.raises(erasus.InvalidInputError, match="train_norm_constrained"):
        erasus.get_strategy("certified_newton", hessian_lipschitz=0.1, norm_bound=1.0).unlearn(
            **{**kw, "model": big})
    with pytest.raises(erasus.InvalidInputError, match="epsilon"):
        erasus.get_strategy("certified_newton", hessian_lipschitz=0.1, epsilon=2.0).unlearn(**kw)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_norm_constrained_training_projects_like_the_reference_and_keeps_the_input():
    x, y = _data()
    model = _linear()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    out = train_norm_constrained(model, (x, y), norm_bound=1.0, epochs=3, batch_size=32, lr=0.05, progress=False)
    assert parameter_norm(out) <= 1.0 + 1e-6
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    # with a ball too large to bind it is plain Adam with weight decay: replay the same batches by hand
    free = train_norm_constrained(model, (x, y), norm_bound=1e6, epochs=2, batch_size=32, lr=0.05, seed=7,
                                  progress=False)
    ref = _linear()
    ref.load_state_dict(before)
    opt = torch.optim.Adam(ref.parameters(), lr=0.05, weight_decay=5e-4)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=32, shuffle=True,
                                         generator=torch.Generator().manual_seed(7))
    for _ in range(2):
        for xb, yb in loader:
            opt.zero_grad()
            torch.nn.functional.cross_entropy(ref(xb), yb).backward()
            opt.step()
    torch.testing.assert_close(free.weight, ref.weight)
