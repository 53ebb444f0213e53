"""Registry metric classes on digits and tiny MLPs: values against hand computations and unlearning sanity."""

from __future__ import annotations

import copy

import erasus
import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from erasus.errors import ErasusTypeError, InvalidInputError
from erasus.metrics import (
    AccuracyMetric,
    ActivationDistanceMetric,
    AvgGapMetric,
    ECEMetric,
    FeatureDistanceMetric,
    JSDivergenceMetric,
    LossMetric,
    LossMIAMetric,
    MIAEfficacyMetric,
    MIAMetric,
    RelearnTimeMetric,
    WeightDistanceMetric,
    ZRFMetric,
    collect_outputs,
)
from erasus.strategies.base import reinitialize
from scipy.spatial.distance import jensenshannon
from torch.utils.data import DataLoader, TensorDataset


def _logits(model, x):
    with torch.no_grad():
        return model.eval()(x)


def _snapshot(model):
    return copy.deepcopy(model.state_dict()), [m.training for m in model.modules()]


def _unchanged(model, snap):
    state, flags = snap
    return all(torch.equal(v, model.state_dict()[k]) for k, v in state.items()) and flags == [
        m.training for m in model.modules()
    ]


def test_every_metric_is_registered():
    expected = {"accuracy", "loss", "mia", "mia_loss", "mia_efficacy", "lira", "zrf", "js_divergence",
                "activation_distance", "weight_distance", "relearn_time", "feature_distance", "ece", "avg_gap",
                "efficiency"}
    assert expected <= set(erasus.list_metrics())
    assert isinstance(erasus.get_metric("mia"), MIAMetric)


def test_accuracy_and_loss_match_hand_computation(digits, original):
    x, y = digits.test
    z = _logits(original, x)
    loader = DataLoader(TensorDataset(x, y), batch_size=7)
    out = AccuracyMetric(topk=(1, 3)).compute(original, digits.forget, test=loader)
    assert out["test_accuracy"] == pytest.approx((z.argmax(1) == y).double().mean().item())
    top3 = (z.topk(3, 1).indices == y[:, None]).any(1).double().mean().item()
    assert out["test_top3_accuracy"] == pytest.approx(top3)
    assert set(out) == {"forget_accuracy", "forget_top3_accuracy", "test_accuracy", "test_top3_accuracy"}
    loss = LossMetric().compute(original, test=digits.test)
    assert loss["test_loss"] == pytest.approx(TF.cross_entropy(z.double(), y).item(), rel=1e-5)


def test_ece_metric_matches_brute_force_binning(digits, original):
    probs = torch.softmax(_logits(original, digits.test[0]).double(), 1).numpy()
    labels = digits.test[1].numpy()
    conf, hit = probs.max(1), probs.argmax(1) == labels
    expect = 0.0
    for b in range(10):  # equal-width confidence bins (lo, hi], weighted by their share of samples
        idx = (conf > b / 10) & (conf <= (b + 1) / 10)
        if idx.any():
            expect += idx.mean() * abs(hit[idx].mean() - conf[idx].mean())
    assert ECEMetric(n_bins=10).compute(original, test=digits.test) == {"test_ece": pytest.approx(expect, abs=1e-6)}


def test_metrics_leave_the_model_untouched(digits, original):
    original.train()
    snap = _snapshot(original)
    MIAMetric().compute(original, digits.forget, digits.test)
    RelearnTimeMetric(threshold=1.0, max_steps=3).compute(original, digits.forget)
    ZRFMetric().compute(original, digits.forget)
    assert _unchanged(original, snap)
    original.eval()


def test_shuffling_loader_is_evaluated_in_data_order(digits, original, retrained):
    ds = TensorDataset(*digits.forget)
    shuffled = DataLoader(ds, batch_size=16, shuffle=True)
    js = JSDivergenceMetric().compute(original, shuffled, reference_model=retrained)["forget_js_divergence"]
    p = torch.softmax(_logits(original, digits.forget[0]).double(), 1).numpy()
    q = torch.softmax(_logits(retrained, digits.forget[0]).double(), 1).numpy()
    expect = np.mean([jensenshannon(p[i], q[i], base=2) ** 2 for i in range(len(p))])
    assert js == pytest.approx(expect, abs=1e-6)
    act = ActivationDistanceMetric().compute(original, shuffled, reference_model=retrained)
    assert act["forget_activation_distance"] == pytest.approx(np.linalg.norm(p - q, axis=1).mean(), abs=1e-6)


def test_output_distances_to_self_are_zero(digits, original):
    assert JSDivergenceMetric().compute(original, digits.forget, reference_model=original)[
        "forget_js_divergence"] == pytest.approx(0.0, abs=1e-9)
    wd = WeightDistanceMetric().compute(original, reference_model=copy.deepcopy(original))
    assert wd == {"weight_distance": 0.0, "weight_distance_relative": 0.0}


def test_weight_distance_matches_flattened_parameters(original, retrained):
    a = torch.nn.utils.parameters_to_vector(original.parameters()).detach().double()
    b = torch.nn.utils.parameters_to_vector(retrained.parameters()).detach().double()
    out = WeightDistanceMetric().compute(original, reference_model=retrained)
    assert out["weight_distance"] == pytest.approx(float((a - b).norm()))
    assert out["weight_distance_relative"] == pytest.approx(float((a - b).norm() / b.norm()))
    with pytest.raises(InvalidInputError, match="shape"):
        WeightDistanceMetric().compute(original, reference_model=torch.nn.Sequential(
            torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10)))


def test_mia_loss_on_overfit_model_beats_a_model_that_never_saw_the_data(digits, original, stranger):
    seen = LossMIAMetric().compute(original, digits.forget, digits.test)
    unseen = LossMIAMetric().compute(stranger, digits.forget, digits.test)
    losses_f = TF.cross_entropy(_logits(original, digits.forget[0]), digits.forget[1], reduction="none")
    losses_t = TF.cross_entropy(_logits(original, digits.test[0]), digits.test[1], reduction="none")
    y = np.r_[np.ones(len(losses_f)), np.zeros(len(losses_t))]
    from sklearn.metrics import roc_auc_score

    assert seen["mia_loss_auc"] == pytest.approx(roc_auc_score(y, -np.r_[losses_f, losses_t]), abs=1e-6)
    assert seen["mia_loss_auc"] > unseen["mia_loss_auc"]
    assert abs(unseen["mia_loss_auc"] - 0.5) < 0.1


def test_entropy_mia_on_overfit_model_beats_unseen_and_retrained(digits, original, retrained, stranger):
    mia = MIAMetric()
    overfit = mia.compute(original, digits.forget, digits.test, retain=digits.retain)
    gold = mia.compute(retrained, digits.forget, digits.test, retain=digits.retain)
    assert overfit["mia_accuracy"] > gold["mia_accuracy"]
    # the spec's call shape: forget + test only (cross-fitted protocol)
    two_arg = mia.compute(original, digits.forget, digits.test)
    never = mia.compute(stranger, digits.forget, digits.test)
    assert set(two_arg) == {"mia_accuracy", "mia_auc", "mia_balanced_accuracy"}
    assert two_arg["mia_auc"] > never["mia_auc"]
    assert abs(never["mia_auc"] - 0.5) < 0.1


def test_mia_efficacy_is_higher_for_the_retrained_model(digits, original, retrained):
    m = MIAEfficacyMetric()
    assert m.compute(retrained, digits.forget, digits.retain, digits.test)["mia_efficacy"] > \
        m.compute(original, digits.forget, digits.retain, digits.test)["mia_efficacy"]


def test_zrf_of_a_random_model_against_itself_is_one(digits, original):
    teacher = reinitialize(original, seed=4)
    assert ZRFMetric(incompetent_model=teacher).compute(teacher, digits.forget)["zrf"] == pytest.approx(1.0)
    trained = ZRFMetric(seed=4).compute(original, digits.forget)["zrf"]
    p = torch.softmax(_logits(original, digits.forget[0]).double(), 1).numpy()
    q = torch.softmax(_logits(teacher, digits.forget[0]).double(), 1).numpy()
    expect = 1 - np.mean([jensenshannon(p[i], q[i], base=2) ** 2 for i in range(len(p))])  # Chundawat et al.
    assert trained == pytest.approx(expect, abs=1e-6)
    assert trained < 0.9


def test_feature_distance_ignores_permutation_and_scale_of_hidden_units(digits, original):
    twin = copy.deepcopy(original)
    perm = torch.randperm(64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        # permuting and positively scaling hidden units commutes with ReLU: same function, transformed features
        twin[0].weight.copy_(2.0 * original[0].weight[perm])
        twin[0].bias.copy_(2.0 * original[0].bias[perm])
        twin[2].weight.copy_(original[2].weight[:, perm] / 2.0)
    out = FeatureDistanceMetric().compute(original, digits.forget, reference_model=twin)
    assert out["forget_feature_distance"] == pytest.approx(0.0, abs=1e-6)
    feats = erasus.metrics.capture_features(original, digits.forget)
    with torch.no_grad():
        assert torch.allclose(feats, torch.relu(original[0](digits.forget[0])), atol=1e-6)
    expect_l2 = (feats - 2.0 * feats[:, perm]).double().norm(dim=1).mean()
    assert out["forget_feature_l2"] == pytest.approx(float(expect_l2), rel=1e-5)
    assert out["forget_feature_l2"] > 1.0


def test_relearn_time_matches_a_hand_written_finetuning_loop(digits, retrained):
    threshold = 0.99
    out = RelearnTimeMetric(threshold=threshold, lr=1e-2, max_steps=200, train_batch_size=16,
                            seed=5).compute(retrained, digits.forget)
    learner = copy.deepcopy(retrained)
    opt = torch.optim.Adam(learner.parameters(), lr=1e-2)
    loader = DataLoader(TensorDataset(*digits.forget), batch_size=16, shuffle=True,
                        generator=torch.Generator().manual_seed(5))
    steps, done = 0, (_logits(learner, digits.forget[0]).argmax(1) == digits.forget[1]).double().mean() >= threshold
    while not done and steps < 200:
        for x, y in loader:
            learner.train()
            opt.zero_grad()
            TF.cross_entropy(learner(x), y).backward()
            opt.step()
            steps += 1
            if (_logits(learner, digits.forget[0]).argmax(1) == digits.forget[1]).double().mean() >= threshold:
                done = True
                break
    assert out == {"relearn_time": float(steps), "relearn_reached": 1.0}
    assert 0 < steps < 200


def test_relearn_time_is_zero_for_a_model_that_still_knows_the_forget_set(digits, original):
    assert RelearnTimeMetric(threshold=1.0).compute(original, digits.forget)["relearn_time"] == 0.0


def test_avg_gap_metric_matches_its_components(digits, original, retrained):
    out = AvgGapMetric().compute(original, digits.forget, digits.retain, digits.test, reference_model=retrained)
    parts = []
    for key, metric in (("forget_accuracy", AccuracyMetric()), ("retain_accuracy", AccuracyMetric()),
                        ("test_accuracy", AccuracyMetric()), ("mia_efficacy", MIAEfficacyMetric())):
        a = metric.compute(original, digits.forget, digits.retain, digits.test)[key]
        b = metric.compute(retrained, digits.forget, digits.retain, digits.test)[key]
        assert out[f"gap_{key}"] == pytest.approx(abs(a - b))
        parts.append(abs(a - b))
    assert out["avg_gap"] == pytest.approx(np.mean(parts))


def test_bad_inputs_get_clear_errors(digits, original):
    with pytest.raises(InvalidInputError, match="reference_model"):
        JSDivergenceMetric().compute(original, digits.forget, reference_model=None)
    with pytest.raises(InvalidInputError, match="at least one"):
        AccuracyMetric().compute(original)
    with pytest.raises(ErasusTypeError, match="nn.Module"):
        collect_outputs("not a model", digits.forget)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="batch_size"):
        AccuracyMetric(batch_size=0)
    with pytest.raises(InvalidInputError, match="no module named"):
        FeatureDistanceMetric(layer="nope").compute(original, digits.forget, reference_model=original)


def test_mia_spec_call_shape_with_loaders_matches_tuples(digits, original):
    loaders = [DataLoader(TensorDataset(*d), batch_size=32, shuffle=True) for d in (digits.forget, digits.test)]
    via_registry = erasus.get_metric("mia").compute(original, *loaders)
    assert via_registry == MIAMetric().compute(original, digits.forget, digits.test)
