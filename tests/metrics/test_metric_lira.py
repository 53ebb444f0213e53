"""LiRA with a few tiny shadow MLPs: separates members of an overfit model, not data it never trained on."""

from __future__ import annotations

import pytest
import torch
from erasus.errors import ErasusTypeError, InvalidInputError
from erasus.metrics import LiRAMetric
from metric_helpers import fit, make_mlp

SHADOW = {"model_factory": make_mlp, "n_shadow": 4, "epochs": 150, "lr": 3e-3, "train_batch_size": 64,
          "progress": False}


@pytest.fixture(scope="module")
def setup(digits):
    """Target trained on 100 forget + 100 retain samples; 100 unseen test queries; 200 population samples, so
    shadows (trained on half of population + queries) see as many samples as the target."""
    forget = tuple(a[:100] for a in digits.forget)
    retain = tuple(a[:100] for a in digits.retain)
    test = tuple(a[:100] for a in digits.test)
    population = tuple(a[:200] for a in digits.population)
    target = fit(torch.cat([forget[0], retain[0]]), torch.cat([forget[1], retain[1]]), seed=1)
    never = fit(*(a[:200] for a in digits.other), seed=3)
    return forget, test, population, target, never


@pytest.mark.parametrize("online", [True, False])
def test_lira_separates_members_of_an_overfit_model(setup, online):
    forget, test, population, target, never = setup
    lira = LiRAMetric(population=population, online=online, **SHADOW)
    members = lira.compute(target, forget, test)
    assert members["lira_auc"] > 0.6
    assert set(members) == {"lira_auc", "lira_balanced_accuracy", "lira_advantage", "lira_tpr_at_fpr_0.001",
                            "lira_tpr_at_fpr_0.01"}
    # same queries (cached shadows), but the model never trained on the "members": membership labels are random
    unrelated = lira.compute(never, forget, test)
    assert abs(unrelated["lira_auc"] - 0.5) < 0.1
    assert unrelated["lira_tpr_at_fpr_0.01"] <= members["lira_tpr_at_fpr_0.01"] + 0.05


def test_lira_shadow_keep_matrix_is_balanced_and_reused(setup):
    forget, test, population, target, _ = setup
    calls = []

    def train_fn(model, dataset):
        calls.append(len(dataset))
        return model  # an untrained shadow is enough to check the bookkeeping

    lira = LiRAMetric(population=population, train_fn=train_fn, **{**SHADOW, "n_shadow": 6})
    phi, in_mask = lira.shadow_confidences(target, forget, test)
    assert phi.shape == (200, 6) and in_mask.shape == (200, 6)
    assert (in_mask.sum(axis=1) == 3).all()  # every query IN exactly half of the shadows
    assert sum(calls) == 3 * 400  # each of population (200) + queries (200) trains exactly 3 shadows
    lira.compute(target, forget, test)
    assert len(calls) == 6  # fit once per (forget, test) pair


def test_lira_offline_never_trains_shadows_on_queries(setup):
    forget, test, population, target, _ = setup
    lira = LiRAMetric(population=population, online=False, train_fn=lambda m, d: m, **SHADOW)
    _, in_mask = lira.shadow_confidences(target, forget, test)
    assert not in_mask.any()


def test_lira_leaves_the_global_rng_alone(setup):
    forget, test, population, target, _ = setup
    state = torch.random.get_rng_state()
    LiRAMetric(population=population, train_fn=lambda m, d: m, **SHADOW).compute(target, forget, test)
    assert torch.equal(state, torch.random.get_rng_state())


def test_lira_rejects_bad_configuration():
    with pytest.raises(InvalidInputError, match="n_shadow"):
        LiRAMetric(model_factory=make_mlp, population=([0.0],), n_shadow=1)
    with pytest.raises(ErasusTypeError, match="model_factory"):
        LiRAMetric(model_factory=None, population=([0.0],))  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="population"):
        LiRAMetric(model_factory=make_mlp, population=None)
