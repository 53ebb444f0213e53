"""DP-SGD privacy accounting through opacus' accountants, and group privacy for removing ``g`` samples.

A model trained with DP-SGD (Abadi et al., CCS 2016) at noise multiplier ``sigma``, Poisson sample rate ``q``
for ``T`` steps is ``(epsilon, delta)``-DP, with ``epsilon`` from the RDP accountant (Mironov, CSF 2017;
opacus ``RDPAccountant``) or the PRV accountant (Gopi, Lee & Wutschitz, NeurIPS 2021; opacus
``PRVAccountant``, an upper bound). For a *group* of ``g`` samples, ``(epsilon, delta)``-DP implies
``(g epsilon, g e^{(g-1) epsilon} delta)``-DP (group privacy; Dwork & Roth 2014, Thm 2.2 for pure DP and
its standard approximate-DP extension, e.g. Vadhan 2017, Lemma 2.2): removing up to ``g`` training samples
from a DP-trained model leaves it that indistinguishable from a model trained without them. That is a
property of the training run; it says nothing about a model that saw the data without DP.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import torch

from ..errors import InvalidInputError, require
from .certificate import Certificate, hash_data, hash_model

__all__ = ["dp_epsilon", "noise_multiplier_for", "group_privacy", "dp_certificate", "ACCOUNTANTS"]

ACCOUNTANTS = ("rdp", "prv")


def _check(noise_multiplier: float, sample_rate: float, steps: int, delta: float, accountant: str) -> None:
    if not (isinstance(noise_multiplier, (int, float)) and math.isfinite(noise_multiplier) and noise_multiplier > 0):
        raise InvalidInputError(f"noise_multiplier must be a positive finite number, got {noise_multiplier!r}")
    if not (isinstance(sample_rate, (int, float)) and 0 < sample_rate <= 1):
        raise InvalidInputError(f"sample_rate must be in (0, 1], got {sample_rate!r}")
    if not isinstance(steps, int) or isinstance(steps, bool) or steps <= 0:
        raise InvalidInputError(f"steps must be a positive int, got {steps!r}")
    if not (isinstance(delta, (int, float)) and 0 < delta < 1):
        raise InvalidInputError(f"delta must be in (0, 1), got {delta!r}")
    if accountant not in ACCOUNTANTS:
        raise InvalidInputError(f"accountant must be one of {ACCOUNTANTS}, got {accountant!r}")


def dp_epsilon(*, noise_multiplier: float, sample_rate: float, steps: int, delta: float,
               accountant: str = "rdp") -> float:
    """Epsilon spent by ``steps`` Poisson-subsampled Gaussian DP-SGD steps, from opacus' ``accountant``."""
    _check(noise_multiplier, sample_rate, steps, delta, accountant)
    require("opacus", "dp", purpose="DP accounting")
    return _epsilon(float(noise_multiplier), float(sample_rate), int(steps), float(delta), accountant)


@functools.lru_cache(maxsize=256)
def _epsilon(noise_multiplier: float, sample_rate: float, steps: int, delta: float, accountant: str) -> float:
    # opacus' RDP orders below 2 are summed in pure Python (~1 s per call on a loaded core); the value is a
    # pure function of these scalars, so repeated accounting (sweeps, verification) is cached
    from opacus.accountants import create_accountant

    acc = create_accountant(mechanism=accountant)
    acc.history = [(noise_multiplier, sample_rate, steps)]
    return float(acc.get_epsilon(delta=delta))


def noise_multiplier_for(*, target_epsilon: float, target_delta: float, sample_rate: float, steps: int,
                         accountant: str = "rdp") -> float:
    """The noise multiplier opacus' ``get_noise_multiplier`` calibrates for ``steps`` steps (cached)."""
    _check(1.0, sample_rate, steps, target_delta, accountant)
    if not (isinstance(target_epsilon, (int, float)) and math.isfinite(target_epsilon) and target_epsilon > 0):
        raise InvalidInputError(f"target_epsilon must be a positive finite number, got {target_epsilon!r}")
    require("opacus", "dp", purpose="DP accounting")
    return _noise_multiplier(float(target_epsilon), float(target_delta), float(sample_rate), int(steps), accountant)


@functools.lru_cache(maxsize=64)
def _noise_multiplier(target_epsilon: float, target_delta: float, sample_rate: float, steps: int,
                      accountant: str) -> float:
    from opacus.accountants.utils import get_noise_multiplier

    return float(get_noise_multiplier(target_epsilon=target_epsilon, target_delta=target_delta,
                                      sample_rate=sample_rate, steps=steps, accountant=accountant))


def group_privacy(epsilon: float, delta: float, group_size: int) -> tuple[float, float]:
    """``(g epsilon, g e^{(g-1) epsilon} delta)``: the guarantee ``(epsilon, delta)``-DP gives a group of ``g``."""
    if not isinstance(group_size, int) or isinstance(group_size, bool) or group_size < 1:
        raise InvalidInputError(f"group_size must be a positive int, got {group_size!r}")
    if epsilon < 0 or not 0 <= delta < 1:
        raise InvalidInputError(f"need epsilon >= 0 and 0 <= delta < 1, got ({epsilon}, {delta})")
    g = group_size
    log_delta = math.log(g) + (g - 1) * epsilon + math.log(delta) if delta > 0 else -math.inf
    # past ~e^709 the group delta is far beyond 1 anyway: report inf rather than overflow
    return g * epsilon, math.exp(log_delta) if log_delta < 700 else math.inf


def dp_certificate(
    model: torch.nn.Module,
    data: Any,
    *,
    noise_multiplier: float,
    sample_rate: float,
    steps: int,
    delta: float,
    group_size: int = 1,
    accountant: str = "rdp",
    removals: int = 0,
    fine_tuned: bool = False,
) -> Certificate:
    """A certificate for removing up to ``group_size`` samples of ``data`` from a model DP-SGD-trained on it.

    ``data`` is the set the DP-SGD run read (its hash is recorded). The certified ``(epsilon, delta)`` is the
    group-privacy guarantee; the accountant's per-sample epsilon is kept in ``parameters``. ``fine_tuned``
    marks a DP *fine-tuning* run: then the guarantee covers only the fine-tuning steps on ``data`` and there
    is no guarantee for anything the model saw before (the statement says so).
    """
    eps = dp_epsilon(noise_multiplier=noise_multiplier, sample_rate=sample_rate, steps=steps, delta=delta,
                     accountant=accountant)
    g_eps, g_delta = group_privacy(eps, delta, group_size)
    if g_delta >= 1:
        raise InvalidInputError(
            f"group privacy for {group_size} samples at per-sample epsilon {eps:.3g} gives delta "
            f"{g_delta:.3g} >= 1: no guarantee; use a smaller group or more noise"
        )
    if not isinstance(removals, int) or not 0 <= removals <= group_size:
        raise InvalidInputError(f"removals must be an int in [0, group_size={group_size}], got {removals!r}")
    scope = ("the DP fine-tuning steps on this data only; no forgetting guarantee for data the model saw "
             "before fine-tuning" if fine_tuned else "the DP-SGD training run on this data")
    return Certificate(
        mechanism="dp_sgd_group_privacy",
        epsilon=g_eps,
        delta=g_delta,
        bound_name="removed_samples",
        bound_value=float(removals),
        budget=float(group_size),
        removals=removals,
        model_hash=hash_model(model),
        data_hash=hash_data(data),
        statement=(
            f"DP-SGD (sigma={noise_multiplier:.4g}, q={sample_rate:.4g}, T={steps}) is ({eps:.4g}, {delta:.3g})-DP "
            f"by the {accountant.upper()} accountant; by group privacy, removing up to {group_size} sample(s) is "
            f"({g_eps:.4g}, {g_delta:.3g})-indistinguishable from never having had them. Covers {scope}."
        ),
        parameters={
            "noise_multiplier": float(noise_multiplier),
            "sample_rate": float(sample_rate),
            "steps": int(steps),
            "accountant": accountant,
            "accountant_epsilon": eps,
            "accountant_delta": float(delta),
            "group_size": group_size,
            "fine_tuned": bool(fine_tuned),
        },
    )
