"""ErasusUnlearner: selection -> weighted coreset -> strategy, evaluation and safe saving."""

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

import erasus
from erasus import ErasusUnlearner


def _digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.data / 16.0, dtype=torch.float32)
    y = torch.tensor(d.target)
    return x, y


@pytest.fixture(scope="module")
def setup():
    x, y = _digits()
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(len(x), generator=g)
    test, train = perm[:300], perm[300:]
    forget, retain = train[:150], train[150:]
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x[train]), y[train]).backward()
        opt.step()
    model.eval()
    ds = lambda idx: TensorDataset(x[idx], y[idx])  # noqa: E731
    return model, ds(forget), ds(retain), ds(test)


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_fit_selects_a_weighted_coreset_and_leaves_the_model_untouched(setup):
    model, forget, retain, test = setup
    before = _state(model)
    un = ErasusUnlearner(model, strategy="grad_diff", selector="kcenter", prune_ratio=0.1, seed=0, lr=5e-3)
    out = un.fit(forget_data=forget, retain_data=retain, progress=False)
    assert out is un.model_ and out is not model
    assert len(un.selection_) == 15 and un.selection_.method == "kcenter"
    assert set(un.timings_) == {"features_s", "selection_s", "unlearning_s", "total_s", "features_cpu_s",
                                "selection_cpu_s", "unlearning_cpu_s", "total_cpu_s"}
    t = un.timings_  # disjoint spans of the same clock inside the total
    assert t["features_cpu_s"] + t["selection_cpu_s"] + t["unlearning_cpu_s"] <= t["total_cpu_s"]
    assert un.history_
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    # the coreset is the kcenter selection on the model's embeddings, as the mid-level API computes it
    ref = erasus.get_selector("kcenter", seed=0).select(15, model=model, data=forget)
    np.testing.assert_array_equal(un.selection_.indices, ref.indices)


def test_coreset_unlearning_equals_the_strategy_on_the_coreset(setup):
    model, forget, retain, _ = setup
    un = ErasusUnlearner(model, strategy="gradient_ascent", selector="herding", prune_ratio=0.2, seed=3, lr=1e-2)
    got = un.fit(forget, None, epochs=1, progress=False)
    coreset = erasus.data.subset(forget, un.selection_.indices)
    ref = erasus.get_strategy("gradient_ascent", lr=1e-2).unlearn(model=model, forget_data=coreset, epochs=1,
                                                                   seed=3, progress=False)
    for a, b in zip(got.parameters(), ref.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_craig_weights_reach_the_strategy(setup):
    model, forget, retain, _ = setup
    un = ErasusUnlearner(model, strategy="gradient_ascent", selector="kmeans", prune_ratio=0.1,
                         features="embeddings", seed=0, lr=1e-2)
    un.fit(forget, None, epochs=1, progress=False)
    w = un.selection_.weights
    assert w.sum() == pytest.approx(len(forget)) and not np.allclose(w, 1.0)
    coreset = erasus.data.subset(forget, un.selection_.indices)
    weighted = erasus.get_strategy("gradient_ascent", lr=1e-2).unlearn(
        model=model, forget_data=coreset, weights=torch.from_numpy(w), epochs=1, seed=0, progress=False)
    for a, b in zip(un.model_.parameters(), weighted.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_full_ratio_uses_every_sample(setup):
    model, forget, retain, _ = setup
    un = ErasusUnlearner(model, strategy="gradient_ascent", selector="kcenter", prune_ratio=1.0, lr=1e-3)
    un.fit(forget, steps=1, progress=False)
    assert len(un.selection_) == len(forget) and un.selection_.method == "full"


def test_evaluate_reports_mia_accuracy_and_gaps(setup):
    model, forget, retain, test = setup
    un = ErasusUnlearner(model, strategy="grad_diff", selector="random", prune_ratio=0.1, lr=5e-3)
    un.fit(forget, retain, progress=False)
    res = un.evaluate(forget, retain, test)
    assert {"mia_accuracy", "retain_accuracy", "forget_accuracy", "test_accuracy"} <= set(res)
    acc = (un.model_(retain.tensors[0]).argmax(1) == retain.tensors[1]).float().mean().item()
    assert res["retain_accuracy"] == pytest.approx(acc)
    gaps = un.evaluate(forget, retain, test, reference_model=model)
    # SalUn's Avg. Gap against the reference model evaluated on its own, key by key
    ref = un.evaluate(forget, retain, test, model=model, metrics=("accuracy", "mia_efficacy"))
    keys = ("forget_accuracy", "retain_accuracy", "test_accuracy", "mia_efficacy")
    assert gaps["avg_gap"] == pytest.approx(np.mean([abs(gaps[k] - ref[k]) for k in keys]), abs=1e-12)
    assert gaps["avg_gap"] > 0  # grad_diff moved the model away from the original


def test_evaluate_without_test_data_runs_the_specification_call(setup):
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    model, forget, retain, _ = setup
    un = ErasusUnlearner(model, strategy="grad_diff", selector="random", prune_ratio=0.1, lr=5e-3)
    un.fit(forget, retain, progress=False)
    res = un.evaluate(forget_data=forget, retain_data=retain)
    assert {"mia_accuracy", "retain_accuracy", "forget_accuracy"} <= set(res)
    # reference: float64 entropies and a cross-fitted forget-vs-retain attack written out with sklearn
    with torch.no_grad():
        ent = [(-(p * p.log()).sum(1)).numpy() for p in
               (torch.softmax(un.model_(d.tensors[0]).double(), 1) for d in (forget, retain))]
    x = np.concatenate(ent)[:, None]
    y = np.r_[np.ones(len(forget)), np.zeros(len(retain))]
    proba = cross_val_predict(LogisticRegression(class_weight="balanced"), x, y, method="predict_proba",
                              cv=StratifiedKFold(5, shuffle=True, random_state=0))[:, 1]
    assert res["mia_accuracy"] == pytest.approx((proba[: len(forget)] > 0.5).mean(), abs=1e-9)
    with pytest.raises(erasus.InvalidInputError, match="mia_efficacy.*pass test_data= to evaluate"):
        un.evaluate(forget, retain, metrics=["mia_efficacy"])
    with pytest.raises(erasus.InvalidInputError, match="metrics must be a non-empty list"):
        un.evaluate(forget, retain, metrics="accuracy")


def test_save_writes_safetensors_and_selection(setup, tmp_path):
    model, forget, retain, _ = setup
    un = ErasusUnlearner(model, strategy="gradient_ascent", selector="random", prune_ratio=0.1, lr=1e-3)
    with pytest.raises(erasus.InvalidInputError, match="call fit"):
        un.save(tmp_path / "x")
    un.fit(forget, steps=2, progress=False)
    out = un.save(tmp_path / "run")
    assert (out / "model.safetensors").exists() and (out / "config.json").exists()
    loaded = ErasusUnlearner.load_weights(model, out)
    for a, b in zip(loaded.parameters(), un.model_.parameters()):
        assert torch.equal(a, b)
    sel = ErasusUnlearner.load_selection(out)
    np.testing.assert_array_equal(sel.indices, un.selection_.indices)


def test_paths_are_accepted(setup, tmp_path):
    model, forget, retain, _ = setup
    np.savez(tmp_path / "forget.npz", x=forget.tensors[0].numpy(), y=forget.tensors[1].numpy())
    un = ErasusUnlearner(model, strategy="gradient_ascent", selector="kcenter", prune_ratio=0.1, lr=1e-3)
    un.fit(str(tmp_path / "forget.npz"), steps=1, progress=False)
    assert len(un.selection_) == 15


def test_bad_arguments(setup):
    model, forget, *_ = setup
    with pytest.raises(erasus.InvalidInputError, match="exactly one of model"):
        ErasusUnlearner()
    with pytest.raises(erasus.InvalidInputError, match="ratio must be in"):
        ErasusUnlearner(model, prune_ratio=0.0)
    with pytest.raises(erasus.RegistryError, match="unknown strategy"):
        ErasusUnlearner(model, strategy="nope")
    with pytest.raises(erasus.InvalidInputError, match="features must be"):
        ErasusUnlearner(model, features="pixels")


def test_per_class_craig_below_one_pick_per_class_selects_over_the_whole_set(setup):
    model, forget, retain, _ = setup
    un = ErasusUnlearner(model, strategy="gradient_ascent", selector="craig", prune_ratio=0.04, lr=1e-3)
    un.fit(forget, steps=1, progress=False)  # k = 6 < 10 classes
    assert len(un.selection_) == 6 and un.selection_.weights.sum() == pytest.approx(len(forget))
    un = ErasusUnlearner(model, strategy="gradient_ascent", selector="craig", prune_ratio=0.2, lr=1e-3)
    un.fit(forget, steps=1, progress=False)  # k = 30: per-class, every class of the forget set is represented
    labels = forget.tensors[1].numpy()
    assert set(labels[un.selection_.indices]) == set(labels)
