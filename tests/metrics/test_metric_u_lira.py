"""U-LiRA with a few tiny shadow MLPs on digits: it separates a model that never unlearned the forget set from
the oracle, not an independently retrained oracle from the oracle; shadows are unlearned on exactly their
own forget members."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from erasus.errors import InvalidInputError
from erasus.metrics import ULiRAMetric
from erasus.metrics.functional import u_lira_scores
from metric_helpers import fit, make_mlp
from scipy.stats import norm

SHADOW = {"model_factory": make_mlp, "n_shadow": 4, "epochs": 150, "lr": 3e-3, "train_batch_size": 64,
          "progress": False}


@pytest.fixture(scope="module")
def setup(digits):
    forget = tuple(a[:100] for a in digits.forget)
    retain = tuple(a[:100] for a in digits.retain)
    population = tuple(a[:200] for a in digits.population)
    original = fit(torch.cat([forget[0], retain[0]]), torch.cat([forget[1], retain[1]]), seed=1)
    oracle, oracle2 = fit(*retain, seed=2), fit(*retain, seed=4)
    return forget, population, original, oracle, oracle2


def test_u_lira_tells_an_un_unlearned_model_from_the_oracle_but_not_two_oracles(setup):
    forget, population, original, oracle, oracle2 = setup
    metric = ULiRAMetric(population=population, **SHADOW)
    leaked = metric.compute(original, forget, reference_model=oracle)
    assert leaked["u_lira_auc"] > 0.65
    same = metric.compute(oracle2, forget, reference_model=oracle)  # cached shadows
    assert abs(same["u_lira_auc"] - 0.5) < 0.1


def test_shadows_are_unlearned_on_their_own_forget_members(setup):
    forget, population, original, oracle, _ = setup
    seen = []

    def unlearn(model, forget_part, retain_part):
        seen.append((len(forget_part), len(retain_part), {int(i) for i in forget_part.indices}))
        return model

    metric = ULiRAMetric(population=population, unlearn_fn=unlearn, **{**SHADOW, "epochs": 1})
    metric.compute(original, forget, reference_model=oracle)
    assert len(seen) == 4
    _, mask = metric.shadow_confidences(original, forget)
    for s, (n_f, n_r, ids) in enumerate(seen):
        # the pool is population (200) then forget (100): a shadow's forget part is its forget members
        assert ids == {200 + i for i in np.flatnonzero(mask[:, s])} and n_f == len(ids)
    assert sum(n_f + n_r for n_f, n_r, _ in seen) == 300 * 4 // 2  # every pool sample is in half of the shadows
    assert (mask.sum(1) == 2).all()


def test_u_lira_score_is_the_gaussian_likelihood_ratio():
    rng = np.random.default_rng(0)
    shadow = rng.normal(size=(5, 4))
    mask = np.array([[1, 1, 0, 0]] * 5, dtype=bool)
    target = rng.normal(size=5)
    # pooled (S < 64) variances, as Carlini et al. with few shadows
    mu_u, mu_r = shadow[:, :2].mean(1), shadow[:, 2:].mean(1)
    sd_u = np.sqrt(((shadow[:, :2] - mu_u[:, None]) ** 2).sum() / 10)
    sd_r = np.sqrt(((shadow[:, 2:] - mu_r[:, None]) ** 2).sum() / 10)
    ref = norm.logpdf(target, mu_u, sd_u) - norm.logpdf(target, mu_r, sd_r)
    np.testing.assert_allclose(u_lira_scores(target, shadow, mask), ref, rtol=1e-12)


def test_u_lira_refuses_bad_configuration():
    with pytest.raises(InvalidInputError, match="n_shadow"):
        ULiRAMetric(population=([0],), model_factory=make_mlp, n_shadow=3)
    with pytest.raises(InvalidInputError, match="population"):
        ULiRAMetric(population=None, model_factory=make_mlp)
    with pytest.raises(InvalidInputError, match="reference_model"):
        ULiRAMetric(population=([0],), model_factory=make_mlp).compute(make_mlp(), ([0],), reference_model=None)
