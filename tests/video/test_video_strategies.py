"""The general strategies and the selectors run on a tiny VideoMAEForVideoClassification."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import default_collate

import erasus
from erasus.tasks import ClassificationTask
from video_helpers import clips, tiny_videomae


@pytest.fixture(scope="module")
def trained():
    """A tiny VideoMAE fit on brightness-coded clips, its forget set (class 0) and retain set."""
    model = tiny_videomae(seed=1)
    data = clips(40, seed=2)
    batch = default_collate(data)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(60):
        opt.zero_grad()
        model(pixel_values=batch["pixel_values"], labels=batch["labels"]).loss.backward()
        opt.step()
    model.eval()
    forget = [it for it in data if int(it["labels"]) == 0]
    retain = [it for it in data if int(it["labels"]) != 0]
    return model, forget, retain


def _loss(model, items):
    with torch.no_grad():
        return float(ClassificationTask().per_sample_loss(model, default_collate(items)).mean())


STRATEGIES = {
    "gradient_ascent": {"lr": 3e-3, "optimizer": "adam", "steps": 4},
    "grad_diff": {"lr": 3e-3, "optimizer": "adam", "steps": 4},
    "neg_grad_plus": {"lr": 3e-3, "optimizer": "adam", "steps": 4},
    "scrub": {"lr": 3e-3, "optimizer": "adam", "steps": 6},
    "salun": {"lr": 3e-2, "steps": 4},
    "random_label": {"lr": 3e-2, "steps": 4},
    "bad_teacher": {"lr": 3e-2, "steps": 4},
    "unsir": {"lr": 3e-2, "steps": 3, "noise_steps": 2},
    "ssd": {"alpha": 1.0},
    "fisher_forgetting": {"fisher": "empirical", "alpha": 1e-6},
}


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_general_strategy_forgets_on_videomae_and_leaves_the_callers_model(trained, name):
    model, forget, retain = trained
    opts = dict(STRATEGIES[name])
    steps = opts.pop("steps", None)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    out = erasus.get_strategy(name, **opts).unlearn(model=model, forget_data=forget, retain_data=retain, steps=steps,
                                                    seed=0, progress=False)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert type(out) is type(model)
    assert all(torch.isfinite(p).all() for p in out.parameters())
    # every method here moves the model away from its fit on the forget class
    assert _loss(out, forget) > _loss(model, forget) + 1e-3


def test_lora_through_peft_merges_back_into_videomae(trained):
    pytest.importorskip("peft")
    model, forget, _ = trained
    out = erasus.get_strategy("gradient_ascent", lr=5e-2, optimizer="adam").unlearn(
        model=model, forget_data=forget, steps=4, progress=False,
        lora={"r": 4, "lora_alpha": 8, "target_modules": ["query", "value"]})
    assert type(out) is type(model)
    assert set(dict(out.named_parameters())) == set(dict(model.named_parameters()))
    changed = [n for (n, a), b in zip(model.named_parameters(), out.parameters()) if not torch.equal(a, b)]
    assert changed and all(n.endswith(("query.weight", "value.weight")) for n in changed)
    assert _loss(out, forget) > _loss(model, forget)


def test_embeddings_for_selection_are_the_classifier_input(trained):
    """The penultimate features erasus selects on are VideoMAE's mean-pooled, fc_norm-ed tokens."""
    model, forget, retain = trained
    items = forget + retain[:6]
    feats = erasus.features.embeddings(model, items, progress=False)
    x = default_collate(items)["pixel_values"]
    with torch.no_grad():
        by_hand = model.fc_norm(model.videomae(x).last_hidden_state.mean(1))
    torch.testing.assert_close(torch.as_tensor(feats), by_hand, rtol=1e-4, atol=1e-5)
    sel = erasus.get_selector("kcenter", seed=0).select(k=4, features=feats)
    # farthest-point traversal by brute force from the selector's first centre
    f = by_hand.double()
    chosen = [int(sel.indices[0])]
    for _ in range(3):
        d = torch.cdist(f, f[chosen]).min(1).values
        chosen.append(int(d.argmax()))
    assert list(sel.indices) == chosen


def test_per_sample_gradients_match_a_loop_of_single_clip_gradients(trained):
    model, forget, _ = trained
    items = forget[:5]
    g = erasus.features.per_sample_gradients(model, items, proj_dim=64, seed=3, layers=["classifier"],
                                             progress=False)
    rows = []
    for it in items:
        model.zero_grad()
        model(pixel_values=it["pixel_values"][None], labels=it["labels"][None]).loss.backward()
        rows.append(torch.cat([model.classifier.weight.grad.reshape(-1), model.classifier.bias.grad.reshape(-1)]))
    model.zero_grad()
    full = torch.stack(rows).double()
    # a JL projection keeps inner products in expectation: compare the Gram matrices loosely, the norms' order exactly
    gram, approx = full @ full.T, torch.as_tensor(g).double() @ torch.as_tensor(g).double().T
    assert torch.corrcoef(torch.stack([gram.reshape(-1), approx.reshape(-1)]))[0, 1] > 0.9
    craig = erasus.get_selector("craig", seed=0).select(k=2, features=g)
    assert np.isclose(float(np.sum(craig.weights)), len(items))
