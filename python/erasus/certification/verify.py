"""Re-check a certificate against the model and the data it claims to be about."""

from __future__ import annotations

import math
from typing import Any

import torch

from ..errors import ErasusTypeError, InvalidInputError
from .certificate import Certificate, CertificateMismatchError, hash_data, hash_model

__all__ = ["verify_certified_removal"]


def verify_certified_removal(model: torch.nn.Module, certificate: Certificate, data: Any, *,
                             noise: torch.Tensor | None = None) -> bool:
    """Check ``certificate`` on ``model`` and ``data``; ``True`` iff the claimed guarantee holds for them.

    Refuses (raises :class:`CertificateMismatchError`) when the model's or the data's SHA-256 differs from
    the one the certificate was issued for: changed weights, another data set, other samples or order.
    Then, per mechanism:

    * ``guo2020_newton_*`` (Guo et al., ICML 2020, Corollary 1 / Theorem 3): recomputes the joint gradient
      residual ``||grad L_b(w; D')||_F`` of the perturbed objective over every class on the stored head and
      ``data`` (the retain set), and checks it — and the accumulated data-dependent bound the certificate
      records — against the budget ``sigma epsilon / sqrt(2 log(1.5 / delta))``. The residual needs the secret
      perturbation ``b``: the head's in-memory ``noise``, or ``noise=`` for a head loaded from disk.
    * ``zhang2024_newton_lissa`` (Zhang et al., ICML 2024, Theorem 3.4 + the Gaussian mechanism): recomputes
      the worst-case approximation-error bound ``Delta = 2 C (M C + lam) / (lam + lam_min)`` from the recorded
      constants and checks that the noise was at least ``Delta sqrt(2 log(1.25 / delta)) / epsilon``.
    * ``dp_sgd_group_privacy``: recomputes the accountant's epsilon from the recorded DP-SGD run and checks the
      group-privacy arithmetic and ``removals <= group_size``.
    """
    if not isinstance(certificate, Certificate):
        raise ErasusTypeError(f"certificate must be an erasus.certification.Certificate, got {type(certificate).__name__}")
    if not isinstance(model, torch.nn.Module):
        raise ErasusTypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    model_hash = hash_model(model)
    if model_hash != certificate.model_hash:
        raise CertificateMismatchError(
            f"the model's weights (sha256 {model_hash[:12]}...) are not the ones this certificate was issued for "
            f"({certificate.model_hash[:12]}...): the weights changed after certification"
        )
    data_hash = hash_data(data)
    if data_hash != certificate.data_hash:
        raise CertificateMismatchError(
            f"the data (sha256 {data_hash[:12]}...) is not the data this certificate was issued for "
            f"({certificate.data_hash[:12]}...): pass the same samples, in the same order"
        )
    mech = certificate.mechanism
    if mech.startswith("guo2020_newton_"):
        return _verify_guo(model, certificate, data, noise)
    if mech == "zhang2024_newton_lissa":
        return _verify_zhang(certificate)
    if mech == "dp_sgd_group_privacy":
        return _verify_dp(certificate)
    raise InvalidInputError(f"unknown certificate mechanism {mech!r}")


def _verify_guo(model: torch.nn.Module, cert: Certificate, data: Any, noise: torch.Tensor | None) -> bool:
    from ..data import as_loader
    from ..strategies.certified_removal import CertifiedLogistic, _collect, residual_norm

    if not isinstance(model, CertifiedLogistic):
        raise ErasusTypeError(f"a {cert.mechanism} certificate is about a CertifiedLogistic head, got {type(model).__name__}")
    if noise is not None:
        model.noise = torch.as_tensor(noise, dtype=torch.float64)
    if model.noise is None:
        raise InvalidInputError(
            "verifying a Guo et al. certificate recomputes the residual of the perturbed objective, which needs "
            "the secret perturbation b; it is never saved: pass noise= (the head's .noise from when it was trained)"
        )
    if tuple(model.noise.shape) != tuple(model.weight.shape):
        raise InvalidInputError(f"noise has shape {tuple(model.noise.shape)}, the head's weight {tuple(model.weight.shape)}")
    p = cert.parameters
    if not math.isclose(model.lam, p.get("lam", math.nan)):
        return False
    c = float(math.sqrt(2 * math.log(1.5 / cert.delta))) if p.get("noise") == "gaussian" else 1.0
    if not math.isclose(cert.budget, p["sigma"] * cert.epsilon / c, rel_tol=1e-9):
        return False
    x, y, _ = _collect(model, ((tuple(b), None) for b in as_loader(data, batch_size=1024)))
    residual = float(residual_norm(model, x, y))
    return bool(residual <= cert.budget and cert.bound_value <= cert.budget)


def zhang_bound(*, norm_bound: float, hessian_lipschitz: float, lam: float, lam_min: float) -> float:
    """Zhang et al. 2024, Theorem 3.4: ``||w_tilde - w_tilde*|| <= 2 C (M C + lam) / (lam + lam_min)``."""
    if lam + lam_min <= 0:
        raise InvalidInputError(f"the bound needs lam + lam_min > 0, got lam={lam}, lam_min={lam_min}")
    return 2.0 * norm_bound * (hessian_lipschitz * norm_bound + lam) / (lam + lam_min)


def gaussian_sigma(sensitivity: float, epsilon: float, delta: float) -> float:
    """The Gaussian mechanism's ``sigma = Delta sqrt(2 log(1.25 / delta)) / epsilon`` (Dwork & Roth 2014, Thm A.1)."""
    return sensitivity * math.sqrt(2 * math.log(1.25 / delta)) / epsilon


def _verify_zhang(cert: Certificate) -> bool:
    p = cert.parameters
    bound = zhang_bound(norm_bound=p["norm_bound"], hessian_lipschitz=p["hessian_lipschitz"], lam=p["lam"],
                        lam_min=p["lam_min"])
    need = gaussian_sigma(bound, cert.epsilon, cert.delta)
    return bool(math.isclose(bound, cert.bound_value, rel_tol=1e-9) and p["sigma"] >= need * (1 - 1e-12)
                and p["initial_norm"] <= p["norm_bound"] * (1 + 1e-9) and cert.bound_value <= cert.budget)


def _verify_dp(cert: Certificate) -> bool:
    from .accounting import dp_epsilon, group_privacy

    p = cert.parameters
    eps = dp_epsilon(noise_multiplier=p["noise_multiplier"], sample_rate=p["sample_rate"], steps=p["steps"],
                     delta=p["accountant_delta"], accountant=p["accountant"])
    g_eps, g_delta = group_privacy(eps, p["accountant_delta"], int(p["group_size"]))
    return bool(eps <= p["accountant_epsilon"] * (1 + 1e-6) and g_eps <= cert.epsilon * (1 + 1e-6)
                and g_delta <= cert.delta * (1 + 1e-6) and cert.removals <= int(p["group_size"]))
