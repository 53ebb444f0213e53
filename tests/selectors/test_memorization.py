"""The ``memorization`` selector (RUM, Zhao et al., NeurIPS 2024) against brute-force computations of its proxies."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import erasus
from erasus.errors import ErasusError
from erasus.selectors.memorization import (confidence_gap, feldman_zhang_memorization, loss_gap,
                                           split_by_memorization, symmetric_kl)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def test_proxy_functions_match_brute_force():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(7, 4)) * 3, rng.normal(size=(7, 4)) * 3
    y = rng.integers(0, 4, size=7)
    pa, pb = _softmax(a), _softmax(b)
    for i in range(7):
        p, q = np.clip(pa[i], 1e-10, None), np.clip(pb[i], 1e-10, None)
        kl = (sum(p[c] * np.log(p[c] / q[c]) for c in range(4)) + sum(q[c] * np.log(q[c] / p[c]) for c in range(4))) / 2
        assert symmetric_kl(a, b)[i] == pytest.approx(kl, rel=1e-10)
        assert confidence_gap(a, b, y)[i] == pytest.approx(pa[i, y[i]] - pb[i, y[i]], abs=1e-12)
        assert loss_gap(a, b, y)[i] == pytest.approx(-np.log(pb[i, y[i]]) + np.log(pa[i, y[i]]), rel=1e-10)


def test_feldman_zhang_estimate_matches_explicit_loops():
    rng = np.random.default_rng(1)
    correct = rng.random((9, 5)) < 0.6
    member = rng.random((9, 5)) < 0.5
    member[0], member[1] = True, False  # every column has both kinds of models
    got = feldman_zhang_memorization(correct, member)
    for j in range(5):
        inside = [correct[m, j] for m in range(9) if member[m, j]]
        outside = [correct[m, j] for m in range(9) if not member[m, j]]
        assert got[j] == pytest.approx(np.mean(inside) - np.mean(outside))


def _mlp(seed: int | None = None) -> torch.nn.Module:
    if seed is not None:
        torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(2, 64), torch.nn.ReLU(), torch.nn.Linear(64, 64), torch.nn.ReLU(),
                               torch.nn.Linear(64, 3))


@pytest.fixture(scope="module")
def blobs(fit_full_batch):
    """Three Gaussian blobs; the forget set is 12 typical samples of class 0 and 6 mislabeled outliers that only
    training on them can teach (record-like)."""
    g = torch.Generator().manual_seed(0)
    centers = torch.tensor([[0.0, 0.0], [4.0, 0.0], [0.0, 4.0]])
    y = torch.arange(3).repeat_interleave(60)
    x = centers[y] + torch.randn(180, 2, generator=g) * 0.7
    fx = torch.cat([centers[0] + torch.randn(12, 2, generator=g) * 0.5,
                    centers[1] + torch.randn(6, 2, generator=g) * 0.7])
    fy = torch.zeros(18, dtype=torch.long)  # the last 6 carry class 0 inside the class-1 blob
    model = fit_full_batch(_mlp(0), torch.cat([x, fx]), torch.cat([y, fy]), steps=1500, lr=2e-2)
    reference = fit_full_batch(_mlp(1), x, y, steps=150, lr=2e-2)
    hx = centers[y[::3]] + torch.randn(60, 2, generator=g) * 0.7
    return {"model": model, "reference": reference, "forget": (fx, fy), "retain": (x, y), "heldout": (hx, y[::3])}


def test_confidence_gap_selector_keeps_the_most_memorised(blobs):
    fx, fy = blobs["forget"]
    with torch.no_grad():
        expected = _softmax(blobs["model"](fx).numpy())[np.arange(18), fy] - \
            _softmax(blobs["reference"](fx).numpy())[np.arange(18), fy]
    sel = erasus.get_selector("memorization", proxy="confidence_gap", reference_model=blobs["reference"]).select(
        6, model=blobs["model"], data=blobs["forget"])
    np.testing.assert_allclose(sel.metadata["scores"], expected, atol=1e-6)
    assert sorted(sel.indices.tolist()) == sorted(np.argsort(-expected)[:6].tolist())
    # the mislabeled outliers are what the model memorised: they are the record-like part
    assert set(sel.indices.tolist()) == set(range(12, 18))
    concept, record = split_by_memorization(sel.metadata["scores"], threshold=0.1)
    assert set(record.tolist()) == set(range(12, 18)) and set(concept.tolist()) == set(range(12))
    least = erasus.get_selector("memorization", proxy="loss_gap", keep="least",
                                reference_model=blobs["reference"]).select(6, model=blobs["model"], data=blobs["forget"])
    assert set(least.indices.tolist()) <= set(range(12))


def _sgd_finetune_float64(model, x, y, *, lr, epochs, momentum=0.9, weight_decay=5e-4, patience=4):
    """RUM's held-out fine-tune as formulas, full batch, float64, no torch.optim: ``g = grad + wd * theta``,
    ``v = mu * v + g``, ``theta -= lr * v`` (the update ``torch.optim.SGD`` documents); stop once ``patience``
    epochs in a row bring no lower epoch loss."""
    net = copy.deepcopy(model).double()
    theta = {name: p.detach().clone() for name, p in net.named_parameters()}
    velocity = {name: torch.zeros_like(p) for name, p in theta.items()}
    best, stale = float("inf"), 0
    for _ in range(epochs):
        leaves = {name: p.requires_grad_(True) for name, p in theta.items()}
        loss = torch.nn.functional.cross_entropy(torch.func.functional_call(net, leaves, (x.double(),)), y)
        grads = torch.autograd.grad(loss, list(leaves.values()))
        with torch.no_grad():
            for (name, p), grad in zip(leaves.items(), grads):
                velocity[name] = momentum * velocity[name] + grad + weight_decay * p
                theta[name] = p - lr * velocity[name]
        if float(loss.detach()) < best:
            best, stale = float(loss.detach()), 0
        else:
            stale += 1
            if stale >= patience:
                break
    return lambda inputs: torch.func.functional_call(net, theta, (inputs.double(),))


def test_heldout_retrain_scores_match_an_independent_float64_finetune(blobs):
    """RUM's proxy: the symmetric KL between the model and a copy fine-tuned on held-out data (SGD 0.9 / 5e-4,
    early stopping), checked against the fine-tune written as update formulas in float64 (one full batch, so the
    loader's shuffling cannot matter) and the KL summed class by class."""
    fx, _ = blobs["forget"]
    hx, hy = blobs["heldout"]
    # logits / 10, so that neither softmax saturates at the 1e-10 clamp: saturated, the scores would not depend on
    # the fine-tune at all (then a wrong momentum passes too)
    model = copy.deepcopy(blobs["model"])
    with torch.no_grad():
        model[-1].weight.mul_(0.1)
        model[-1].bias.mul_(0.1)
    tuned = _sgd_finetune_float64(model, hx, hy, lr=0.05, epochs=12)
    with torch.no_grad():
        p = _softmax(model(fx).numpy())
        q = _softmax(tuned(fx).numpy())
    p, q = np.clip(p, 1e-10, None), np.clip(q, 1e-10, None)
    expected = np.array([sum(p[i, c] * np.log(p[i, c] / q[i, c]) + q[i, c] * np.log(q[i, c] / p[i, c])
                             for c in range(3)) / 2 for i in range(len(fx))])
    sel = erasus.get_selector("memorization", seed=3, heldout_data=blobs["heldout"], finetune_epochs=12,
                              finetune_lr=0.05).select(4, model=model, data=blobs["forget"])
    np.testing.assert_allclose(sel.metadata["scores"], expected, rtol=1e-4, atol=1e-8)
    # the held-out fine-tune moves the memorised outliers most
    assert np.mean(expected[12:]) > np.mean(expected[:12])


def test_feldman_zhang_selector_finds_the_outliers(blobs, fit_full_batch):
    x, y = blobs["retain"]

    def train_fn(model, dataset):
        xs = torch.stack([dataset[i][0] for i in range(len(dataset))])
        ys = torch.stack([dataset[i][1] for i in range(len(dataset))])
        # the original model's recipe: long enough to memorise the outliers it sees
        return fit_full_batch(model, xs, ys, steps=1500, lr=2e-2)

    sel = erasus.get_selector("memorization", proxy="feldman_zhang", model_factory=_mlp, train_fn=train_fn,
                              retain_data=(x, y), n_models=4, subset_ratio=0.5).select(
        6, model=blobs["model"], data=blobs["forget"])
    scores = np.asarray(sel.metadata["scores"])
    assert scores[12:].mean() > scores[:12].mean() + 0.3  # in-subset models get the outliers right, others do not


def test_stratified_spends_k_on_both_parts_in_proportion():
    scores = np.r_[np.linspace(0, 0.1, 30), np.linspace(0.8, 1.0, 10)]
    sel = erasus.get_selector("memorization", keep="stratified", threshold=0.5).select(8, features=scores[:, None])
    record = [i for i in sel.indices if scores[i] > 0.5]
    concept = [i for i in sel.indices if scores[i] <= 0.5]
    assert len(record) == 2 and len(concept) == 6 and len(set(sel.indices.tolist())) == 8
    # each part is covered end to end, not only its top
    assert max(scores[concept]) == scores[29] and min(scores[concept]) == 0.0
    assert sel.metadata["record_like"] == list(range(30, 40))


@pytest.mark.parametrize(("options", "match"), [
    ({"proxy": "vibes"}, "proxy must be one of"),
    ({"keep": "top"}, "keep must be"),
    ({"threshold": float("nan")}, "threshold must be a finite number"),
    ({"proxy": "feldman_zhang", "n_models": 1}, "n_models must be an integer >= 2"),
    ({"proxy": "confidence_gap", "reference_model": "ref.pt"}, "reference_model must be a torch.nn.Module"),
])
def test_bad_options_are_refused(options, match):
    with pytest.raises(ErasusError, match=match):
        erasus.get_selector("memorization", **options)


@pytest.mark.parametrize(("options", "match"), [
    ({}, "needs heldout_data="),
    ({"proxy": "confidence_gap"}, "needs reference_model="),
    ({"proxy": "feldman_zhang"}, "needs model_factory="),
])
def test_missing_inputs_are_named(blobs, options, match):
    with pytest.raises(ErasusError, match=match):
        erasus.get_selector("memorization", **options).select(3, model=blobs["model"], data=blobs["forget"])


def test_through_the_unlearner(blobs):
    un = erasus.ErasusUnlearner(blobs["model"], strategy="gradient_ascent", selector="memorization", prune_ratio=1 / 3,
                                selector_options={"proxy": "confidence_gap", "reference_model": blobs["reference"]})
    un.fit(blobs["forget"], steps=2, progress=False)
    assert set(un.selection_.indices.tolist()) == set(range(12, 18))
