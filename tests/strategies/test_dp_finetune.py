"""dp_finetune as a user runs it: exactly the steps asked, noise from OS entropy unless seeded, a diverging
run refused with the caller's model intact, and the accountant's epsilon recomputed independently."""

from __future__ import annotations

import copy
import warnings

import erasus
import numpy as np
import pytest
import torch
from erasus.certification import dp_epsilon

warnings.filterwarnings("ignore", message="Optimal order is the largest alpha")


def _digits_small(digits):
    return (digits.x_retain[:300], digits.y_retain[:300])


def test_dp_finetune_runs_exactly_the_steps_asked(digits):
    s = erasus.get_strategy("dp_finetune")
    s.unlearn(model=digits.model(), forget_data=digits.forget, retain_data=_digits_small(digits), steps=3,
              batch_size=16, progress=False)
    assert len(s.history_) == 3 and s.info_["steps"] == 3  # not rounded up to a whole epoch (19 batches)
    # the accountant is charged for those 3 steps at the calibrated noise: recompute independently
    eps = dp_epsilon(noise_multiplier=s.info_["noise_multiplier"], sample_rate=s.info_["sample_rate"], steps=3,
                     delta=1e-5)
    assert s.info_["epsilon_spent"] == pytest.approx(eps, rel=1e-6) and eps <= 8.0
    cert = s.certificate_
    assert "no forgetting guarantee" in cert.statement and cert.parameters["fine_tuned"] is True


def test_dp_finetune_noise_is_unpredictable_unless_seeded(digits):
    s = erasus.get_strategy("dp_finetune")
    kw = dict(forget_data=digits.forget, retain_data=_digits_small(digits), steps=2, batch_size=32, progress=False)
    runs = [s.unlearn(model=digits.model(), **kw) for _ in range(2)]
    assert not torch.equal(runs[0][0].weight, runs[1][0].weight)
    seeded = [s.unlearn(model=digits.model(), seed=5, **kw) for _ in range(2)]
    assert torch.equal(seeded[0][0].weight, seeded[1][0].weight)


@pytest.mark.parametrize("inplace", [False, True])
def test_dp_finetune_with_a_diverging_lr_raises_and_keeps_the_model(digits, inplace):
    model = digits.model()
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(erasus.NonFiniteError, match="lower lr"):
        erasus.get_strategy("dp_finetune", lr=1e20).unlearn(
            model=model, forget_data=digits.forget, retain_data=_digits_small(digits), steps=5, batch_size=32,
            progress=False, inplace=inplace)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(np.isfinite(v.numpy()).all() for v in model.state_dict().values())


def test_the_unlearner_passes_only_an_explicit_seed_to_the_privacy_noise(digits):
    kw = dict(strategy="dp_finetune", selector="full", batch_size=32)

    def fit(**extra):
        u = erasus.ErasusUnlearner(digits.model(), **kw, **extra)
        return u.fit(digits.forget, _digits_small(digits), steps=2, progress=False)

    assert not torch.equal(fit()[0].weight, fit()[0].weight)
    assert torch.equal(fit(seed=5)[0].weight, fit(seed=5)[0].weight)
