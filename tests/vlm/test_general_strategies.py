"""General strategies run on a CLIPModel through the contrastive task adapter, with coreset weights."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import default_collate

import erasus
from erasus.tasks.contrastive import ContrastiveTask
from vlm_helpers import make_pairs


def _loss(model, pairs):
    with torch.no_grad():
        return float(ContrastiveTask().per_sample_loss(model, default_collate(pairs)).mean())


@pytest.fixture(scope="module")
def mixed_forget(processor):
    # pairs of every class: their in-batch InfoNCE is low on the trained model, so ascent has room to raise it
    return make_pairs(processor, [0, 1, 2, 3] * 2, seed=21)


ASCENT = [("gradient_ascent", {"lr": 1e-3, "optimizer": "adam"}), ("grad_diff", {"lr": 1e-3, "optimizer": "adam"}),
          ("neg_grad_plus", {"lr": 1e-3, "beta": 0.5, "optimizer": "adam"}),
          ("modality_decoupling", {"vision_lr": 1e-3, "text_lr": 1e-3})]


@pytest.mark.parametrize("name,opts", ASCENT, ids=[n for n, _ in ASCENT])
def test_ascent_strategies_raise_the_forget_contrastive_loss(clip_data, mixed_forget, name, opts):
    model, _, retain, _ = clip_data
    w = torch.tensor([2.0, 1.0] * 4)
    out = erasus.get_strategy(name, **opts).unlearn(model=model, forget_data=mixed_forget, retain_data=retain,
                                                    weights=w, steps=4, progress=False)
    assert _loss(out, mixed_forget) > _loss(model, mixed_forget) + 0.05


def test_weights_decide_which_pairs_are_ascended(clip_data, mixed_forget):
    model, _, _, _ = clip_data
    w = torch.tensor([1.0] * 4 + [0.0] * 4)
    out = erasus.get_strategy("gradient_ascent", lr=1e-3, optimizer="adam").unlearn(model=model, forget_data=mixed_forget, weights=w,
                                                                  steps=3, batch_size=8, progress=False)
    with torch.no_grad():
        before = ContrastiveTask().per_sample_loss(model, default_collate(mixed_forget))
        after = ContrastiveTask().per_sample_loss(out, default_collate(mixed_forget))
    assert (after - before)[:4].mean() > (after - before)[4:].mean()


@pytest.mark.parametrize("name,opts", [("scrub", {"lr": 1e-3}), ("l1_sparse", {"lr": 1e-3}), ("ssd", {"alpha": 1.0}),
                                       ("finetune", {"lr": 1e-3})])
def test_retain_based_strategies_run_and_keep_retain_alignment(clip_data, mixed_forget, name, opts):
    model, _, retain, _ = clip_data
    out = erasus.get_strategy(name, **opts).unlearn(model=model, forget_data=mixed_forget, retain_data=retain,
                                                    weights=torch.full((8,), 0.5), steps=3, progress=False)
    changed = any(not torch.equal(a, b) for a, b in zip(model.parameters(), out.parameters()))
    assert changed
    assert all(torch.isfinite(p).all() for p in out.parameters())
    assert _loss(out, retain) < _loss(model, retain) + 0.5


def test_lora_through_peft_merges_back_into_a_clip_model(clip_data, mixed_forget):
    pytest.importorskip("peft")
    model, _, _, _ = clip_data
    out = erasus.get_strategy("gradient_ascent", lr=5e-2).unlearn(
        model=model, forget_data=mixed_forget, steps=4, progress=False,
        lora={"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"]})
    assert type(out) is type(model)
    assert set(dict(out.named_parameters())) == set(dict(model.named_parameters()))
    changed = [n for (n, a), b in zip(model.named_parameters(), out.parameters()) if not torch.equal(a, b)]
    assert changed and all("q_proj" in n or "v_proj" in n for n in changed)
    assert _loss(out, mixed_forget) > _loss(model, mixed_forget)
