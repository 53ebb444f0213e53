"""DP accounting against the Gaussian mechanism's exact privacy curve, group privacy in closed form, and a
DP certificate that verifies."""

from __future__ import annotations

import math
import warnings

import erasus
import pytest
import torch
from erasus.certification import dp_certificate, dp_epsilon, group_privacy, verify_certified_removal
from scipy.optimize import brentq
from scipy.stats import norm

warnings.filterwarnings("ignore", message="Optimal order is the largest alpha")


def _exact_gaussian_epsilon(mu: float, delta: float) -> float:
    """Balle & Wang (ICML 2018), Thm 8: the T-fold Gaussian mechanism at q = 1 is mu-GDP, mu = sqrt(T) / sigma,
    with delta(eps) = Phi(-eps/mu + mu/2) - e^eps Phi(-eps/mu - mu/2); solved for eps."""
    def gap(eps):
        return norm.cdf(-eps / mu + mu / 2) - math.exp(eps) * norm.cdf(-eps / mu - mu / 2) - delta

    return brentq(gap, 0.0, 100.0)


@pytest.mark.parametrize(("sigma", "steps"), [(1.0, 4), (2.0, 25)])
def test_accountants_bound_the_exact_gaussian_curve(sigma, steps):
    delta = 1e-5
    exact = _exact_gaussian_epsilon(math.sqrt(steps) / sigma, delta)
    prv = dp_epsilon(noise_multiplier=sigma, sample_rate=1.0, steps=steps, delta=delta, accountant="prv")
    rdp = dp_epsilon(noise_multiplier=sigma, sample_rate=1.0, steps=steps, delta=delta, accountant="rdp")
    assert exact - 1e-6 <= prv <= exact + 0.05  # PRV is numerically tight, an upper bound
    assert exact - 1e-6 <= rdp <= 1.5 * exact  # RDP is an upper bound, looser


def test_subsampling_only_helps():
    kw = dict(noise_multiplier=1.0, steps=100, delta=1e-5)
    assert dp_epsilon(sample_rate=0.01, **kw) < dp_epsilon(sample_rate=0.1, **kw) < dp_epsilon(sample_rate=1.0, **kw)


def test_group_privacy_closed_form():
    eps, dl = group_privacy(0.5, 1e-5, 3)
    assert eps == pytest.approx(1.5) and dl == pytest.approx(3 * math.exp(1.0) * 1e-5)
    assert group_privacy(0.5, 1e-5, 1) == pytest.approx((0.5, 1e-5), rel=1e-12)
    with pytest.raises(erasus.InvalidInputError, match="group_size"):
        group_privacy(0.5, 1e-5, 0)


def test_dp_certificate_states_group_privacy_and_verifies():
    m = torch.nn.Linear(4, 2)
    data = (torch.randn(20, 4, generator=torch.Generator().manual_seed(0)), torch.arange(20) % 2)
    cert = dp_certificate(m, data, noise_multiplier=1.2, sample_rate=0.1, steps=50, delta=1e-5, group_size=2)
    eps1 = dp_epsilon(noise_multiplier=1.2, sample_rate=0.1, steps=50, delta=1e-5)
    assert cert.epsilon == pytest.approx(2 * eps1)
    assert cert.delta == pytest.approx(2 * math.exp(eps1) * 1e-5)
    assert cert.budget == 2 and cert.budget_left == 2
    assert "group privacy" in cert.statement
    assert verify_certified_removal(m, cert, data)
    with pytest.raises(erasus.InvalidInputError, match="delta"):
        dp_certificate(m, data, noise_multiplier=0.3, sample_rate=1.0, steps=50, delta=1e-5, group_size=20)
