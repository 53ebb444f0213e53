"""Certified unlearning: certificates, their verification, and DP accounting.

* :class:`Certificate` — a frozen, JSON-round-tripping record of a guarantee for one model and one data set,
  written by :meth:`erasus.ErasusUnlearner.save` as ``certificate.json``;
* :func:`verify_certified_removal` — re-checks a certificate on a model and data (refuses mismatched hashes);
* :func:`dp_epsilon`, :func:`group_privacy`, :func:`dp_certificate` — opacus RDP / PRV accounting and
  group privacy for DP-SGD-trained models;
* :func:`train_norm_constrained` — Zhang et al. (ICML 2024)'s training with a weight-norm constraint, the
  precondition of the ``"certified_newton"`` strategy.

The certified strategies are ``erasus.get_strategy("certified_removal")`` (Guo et al., ICML 2020) and
``erasus.get_strategy("certified_newton")`` (Zhang et al., ICML 2024).
"""

from .accounting import ACCOUNTANTS, dp_certificate, dp_epsilon, group_privacy
from .certificate import Certificate, CertificateMismatchError, certificate_of, hash_data, hash_model
from .verify import gaussian_sigma, verify_certified_removal, zhang_bound

__all__ = [
    "ACCOUNTANTS",
    "Certificate",
    "CertificateMismatchError",
    "certificate_of",
    "dp_certificate",
    "dp_epsilon",
    "gaussian_sigma",
    "group_privacy",
    "hash_data",
    "hash_model",
    "train_norm_constrained",
    "verify_certified_removal",
    "zhang_bound",
]


def __getattr__(name: str):
    if name == "train_norm_constrained":
        from ..strategies.certified_newton import train_norm_constrained

        return train_norm_constrained
    raise AttributeError(f"module 'erasus.certification' has no attribute {name!r}")
