"""modality_decoupling: the spec's call shape, tower freezing bit for bit, forgetting, no mutation of the input."""

from __future__ import annotations

import pytest
import torch

import erasus
from erasus.errors import InvalidInputError
from erasus.models import CLIPWrapper, clip_parameter_groups
from erasus.tasks.contrastive import ContrastiveTask


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _forget_loss(model, pairs):
    from torch.utils.data import default_collate

    with torch.no_grad():
        return float(ContrastiveTask().per_sample_loss(model, default_collate(pairs)).mean())


@pytest.mark.parametrize("frozen", ["vision", "text"])
def test_zero_lr_leaves_that_tower_bit_identical(clip_data, frozen):
    model, forget, retain, _ = clip_data
    lrs = {"vision_lr": 0.0, "text_lr": 1e-3} if frozen == "vision" else {"vision_lr": 1e-3, "text_lr": 0.0}
    before = _state(model)
    out = erasus.get_strategy("modality_decoupling", alignment_weight=1.0, **lrs).unlearn(
        model=model, forget_data=forget, retain_data=retain, steps=4, progress=False)
    assert out is not model
    for k, v in model.state_dict().items():  # the caller's model is untouched
        assert torch.equal(v, before[k])
    g0 = clip_parameter_groups(model, split_projection=True)
    g1 = clip_parameter_groups(out, split_projection=True)
    other = "text" if frozen == "vision" else "vision"
    for p0, p1 in zip(g0[frozen] + g0[f"{frozen}_projection"] + g0["logit_scale"],
                      g1[frozen] + g1[f"{frozen}_projection"] + g1["logit_scale"]):
        assert torch.equal(p0, p1)
    assert any(not torch.equal(p0, p1) for p0, p1 in zip(g0[other], g1[other]))


@pytest.mark.parametrize("contrast_retain", [False, True])
def test_forgets_the_forget_pairs_more_than_the_retain_pairs(clip_data, contrast_retain):
    model, forget, retain, _ = clip_data
    out = erasus.get_strategy("modality_decoupling", vision_lr=1e-3, text_lr=1e-3, alignment_weight=1.0,
                              contrast_retain=contrast_retain).unlearn(
        model=model, forget_data=forget, retain_data=retain, steps=15, progress=False)
    # scored against all pairs: one concept's pairs are near-indistinguishable among themselves
    from torch.utils.data import default_collate

    with torch.no_grad():
        rise = ContrastiveTask().per_sample_loss(out, default_collate(forget + retain)) - \
            ContrastiveTask().per_sample_loss(model, default_collate(forget + retain))
    forget_rise, retain_rise = float(rise[:len(forget)].mean()), float(rise[len(forget):].mean())
    assert forget_rise > 0.5
    assert forget_rise > retain_rise + 0.5


def test_coreset_weights_select_what_is_forgotten(clip_data):
    model, forget, retain, _ = clip_data
    pairs = forget[:4] + retain[:4]
    w = torch.tensor([1.0] * 4 + [0.0] * 4)
    out = erasus.get_strategy("modality_decoupling", vision_lr=1e-3, text_lr=1e-3, alignment_weight=0.0).unlearn(
        model=model, forget_data=pairs, weights=w, steps=6, batch_size=8, progress=False)
    # the zero-weight half only served as negatives: its own pairs must not be pushed apart as much
    assert _forget_loss(out, forget[:4]) - _forget_loss(model, forget[:4]) > _forget_loss(out, retain[:4]) - \
        _forget_loss(model, retain[:4])


def test_runs_on_a_wrapper_with_the_spec_loader_call(clip_data, processor):
    from torch.utils.data import DataLoader

    model, forget, retain, _ = clip_data
    clip = CLIPWrapper(model, processor=processor)
    strategy = erasus.strategies.vlm.modality_decoupling.ModalityDecouplingStrategy(vision_lr=1e-5, text_lr=1e-4)
    out = strategy.unlearn(model=clip, forget_loader=DataLoader(forget, batch_size=4),
                           retain_loader=DataLoader(retain, batch_size=4), steps=3, progress=False)
    assert isinstance(out, CLIPWrapper) and len(strategy.history_) == 3


def test_bad_options_are_refused_and_nothing_changes(clip_data):
    model, forget, retain, _ = clip_data
    before = _state(model)
    with pytest.raises(InvalidInputError, match="both 0"):
        erasus.get_strategy("modality_decoupling", vision_lr=0, text_lr=0).unlearn(
            model=model, forget_data=forget, steps=1, inplace=True, progress=False)
    with pytest.raises(InvalidInputError, match="vision_lr"):
        erasus.get_strategy("modality_decoupling", vision_lr=-1.0).unlearn(
            model=model, forget_data=forget, steps=1, inplace=True, progress=False)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    with pytest.raises(InvalidInputError, match="contrastive"):
        erasus.get_strategy("modality_decoupling").unlearn(
            model=torch.nn.Linear(3, 2), forget_data=(torch.randn(4, 3), torch.tensor([0, 1, 0, 1])), steps=1,
            progress=False)
