"""The LLM strategies unlearn image-grounded answers of a tiny LLaVA / BLIP-2 through the multimodal task.

Reference: the answer log-likelihood of the forget records under the model before unlearning, computed by
the HF model's own loss; the caller's model is compared bit for bit with a copy taken before the call."""

from __future__ import annotations

import copy

import pytest
import torch
from mllm_helpers import FORGET_QA, RETAIN_QA, images, memorise, records, tiny_blip2, tiny_llava

import erasus
from erasus.models import BLIP2Wrapper, LLaVAWrapper

SETTINGS = {
    "npo": {"lr": 5e-3, "optimizer": "adamw"},
    "simnpo": {"lr": 5e-3, "optimizer": "adamw"},
    "grad_diff": {"lr": 5e-3, "optimizer": "adamw"},
    "rmu": {"lr": 1e-2, "layer": 1, "update_layers": [0, 1], "steering_coeff": "adaptive", "alpha": 10.0},
}


def _memorised(tokenizer, family: str):
    img = images(2, seed=0)
    cls, make = (LLaVAWrapper, tiny_llava) if family == "llava" else (BLIP2Wrapper, tiny_blip2)
    w = cls(make(tokenizer), tokenizer=tokenizer)
    forget = w.dataset(records(FORGET_QA, img[0]))
    retain = w.dataset(records(RETAIN_QA, img[1]))
    both = w.dataset(records(FORGET_QA, img[0]) + records(RETAIN_QA, img[1]))
    memorise(w, both[:])
    return w, forget, retain


@pytest.fixture(scope="module")
def llava(tokenizer):
    return _memorised(tokenizer, "llava")


@pytest.fixture(scope="module")
def blip2(tokenizer):
    return _memorised(tokenizer, "blip2")


def _answer_nll(w, ds) -> torch.Tensor:
    """Mean answer NLL per record from the HF model's own ``labels=`` loss, one record at a time."""
    out = []
    with torch.no_grad():
        for i in range(len(ds)):
            it = ds[i]
            n = int(it["attention_mask"].sum())
            out.append(w.model(pixel_values=it["pixel_values"][None], input_ids=it["input_ids"][None, :n],
                               labels=it["labels"][None, :n]).loss)
    return torch.stack(out)


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_llm_strategies_unlearn_image_grounded_answers_of_llava(llava, name):
    w, forget, retain = llava
    before = copy.deepcopy(w.state_dict())
    f0, r0 = _answer_nll(w, forget), _answer_nll(w, retain)
    assert float(f0.max()) < 0.5  # memorised to begin with
    out = erasus.get_strategy(name, **SETTINGS[name]).unlearn(model=w, forget_data=forget, retain_data=retain,
                                                               steps=15, seed=0, progress=False)
    f1, r1 = _answer_nll(out, forget), _answer_nll(out, retain)
    assert float(f1.mean()) > float(f0.mean()) + 1.0, (name, f0, f1)
    assert float(r1.mean() - r0.mean()) < float(f1.mean() - f0.mean()) / 2, (name, r0, r1)
    state = w.state_dict()
    assert all(torch.equal(before[k], state[k]) for k in before)  # the caller's model is untouched
    if name == "rmu":  # RMU trains the chosen language-model MLPs only
        vision = {id(p) for p in out.parameter_groups()["vision_tower"]}
        named = dict(out.named_parameters())
        for k, p in named.items():
            if id(p) in vision or "multi_modal_projector" in k:
                assert torch.equal(p, before[k]), k


def test_npo_unlearns_blip2_answers_with_coreset_weights(blip2):
    w, forget, retain = blip2
    before = copy.deepcopy(w.state_dict())
    f0 = _answer_nll(w, forget)
    weights = torch.tensor([2.0, 1.0, 0.0])  # CRAIG-style weights; the third record carries none
    out = erasus.get_strategy("npo", lr=5e-3, optimizer="adamw").unlearn(
        model=w, forget_data=forget, retain_data=retain, weights=weights, steps=15, seed=0, progress=False)
    f1 = _answer_nll(out, forget)
    assert float(f1[:2].mean()) > float(f0[:2].mean()) + 1.0
    assert all(torch.equal(before[k], v) for k, v in w.state_dict().items())


def test_a_failed_call_leaves_the_model_untouched(llava):
    w, forget, retain = llava
    before = copy.deepcopy(w.state_dict())
    with pytest.raises(erasus.errors.InvalidInputError, match="layer"):
        erasus.get_strategy("rmu", layer=7).unlearn(model=w, forget_data=forget, retain_data=retain, steps=2,
                                                    progress=False, inplace=True)
    assert all(torch.equal(before[k], v) for k, v in w.state_dict().items())
