"""Every general strategy that makes sense for a dual encoder runs on a tiny CLIPModel through the contrastive task,
with coreset weights: the caller's model stays bit-identical and the forget pairs' contrastive loss goes up."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import default_collate

import erasus
from erasus.strategies.fisher_forgetting import diagonal_fisher
from erasus.tasks.contrastive import ContrastiveTask
from vlm_helpers import CLASSES, make_pairs


def _forget_loss(model, pairs):
    """Mean symmetric InfoNCE of the forget pairs in one batch of all of them (they cover every class)."""
    with torch.no_grad():
        return float(ContrastiveTask().per_sample_loss(model, default_collate(pairs)).mean())


@pytest.fixture(scope="module")
def mixed_forget(processor):
    return make_pairs(processor, [0, 1, 2, 3] * 2, seed=21)


@pytest.fixture(scope="module")
def prompted(processor):
    return ContrastiveTask(class_prompts=[f"a photo of a {c} square" for c in CLASSES], tokenizer=processor)


WEIGHTS = torch.tensor([2.0, 1.0] * 4)

# (strategy, options, needs the class-prompt task): budgets sized so that each moves the tiny model visibly
GENERAL = [
    ("fisher_forgetting", {"alpha": 1e-3, "fisher": "empirical"}, False),
    ("fisher_forgetting", {"alpha": 1e-3, "fisher": "true"}, True),
    ("salun", {"lr": 3e-3, "optimizer": "adam", "alpha": 0.1}, True),
    ("random_label", {"lr": 3e-3, "optimizer": "adam", "alpha": 0.1}, True),
    ("amnesiac", {"lr": 3e-3, "optimizer": "adam", "alpha": 0.1}, True),
    ("bad_teacher", {"lr": 3e-3, "retain_fraction": 0.5}, False),
    ("scrub", {"lr": 3e-3, "optimizer": "adam", "msteps": 6}, False),
    ("ssd", {"alpha": 1.0, "lam": 1.0}, False),
    ("l1_sparse", {"lr": 3e-3, "optimizer": "adam", "gamma": 1e-4}, False),
]


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("name,opts,needs_prompts", GENERAL,
                         ids=[f"{n}-{o.get('fisher', '')}".rstrip("-") for n, o, _ in GENERAL])
def test_general_strategy_on_clip(clip_data, mixed_forget, prompted, name, opts, needs_prompts):
    model, _, retain, _ = clip_data
    before = _state(model)
    task = {"task": prompted} if needs_prompts else {}
    steps = 12 if name == "scrub" else 6
    out = erasus.get_strategy(name, **opts, **task).unlearn(model=model, forget_data=mixed_forget, retain_data=retain,
                                                             weights=WEIGHTS, steps=steps, progress=False)
    assert out is not model and type(out) is type(model)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "the caller's model changed"
    assert all(torch.isfinite(p).all() for p in out.parameters())
    assert _forget_loss(out, mixed_forget) > _forget_loss(model, mixed_forget) + 0.02


def test_lora_through_peft_on_clip_keeps_the_caller_and_raises_the_forget_loss(clip_data, mixed_forget):
    pytest.importorskip("peft")
    model, _, retain, _ = clip_data
    before = _state(model)
    out = erasus.get_strategy("grad_diff", lr=3e-2, optimizer="adam").unlearn(
        model=model, forget_data=mixed_forget, retain_data=retain, weights=WEIGHTS, steps=6, progress=False,
        lora={"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"]})
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    changed = [n for (n, a), b in zip(model.named_parameters(), out.parameters()) if not torch.equal(a, b)]
    assert changed and all("q_proj" in n or "v_proj" in n for n in changed)
    assert _forget_loss(out, mixed_forget) > _forget_loss(model, mixed_forget) + 0.02


def test_label_methods_without_a_label_space_say_what_to_pass(clip_data, mixed_forget):
    model, _, retain, _ = clip_data
    with pytest.raises(erasus.errors.InvalidInputError, match="class_prompts"):
        erasus.get_strategy("random_label").unlearn(model=model, forget_data=mixed_forget, retain_data=retain, steps=1,
                                                    progress=False)


def test_true_fisher_of_the_zero_shot_classifier_matches_a_per_sample_loop(clip_data, prompted, processor):
    """``F = (1/n) sum_i sum_c p_c(x_i) (d log p_c(x_i) / d theta)^2`` against plain autograd, one sample and class
    at a time (float64 model so the two orders of summation agree tightly)."""
    from erasus.strategies.base import Run

    model, _, retain, _ = clip_data
    m = __import__("copy").deepcopy(model).double().eval()
    pairs = [{k: (v.double() if v.is_floating_point() else v) for k, v in p.items()} for p in retain[:5]]
    run = Run(task=prompted, forget=pairs, retain=pairs, weights=None, steps=1, epochs=None, lr=0.0,
              device=torch.device("cpu"), seed=0, progress=False, batch_size=3, optimizer="sgd", momentum=0.0,
              weight_decay=0.0, original=m, strategy_name="fisher_forgetting")
    got = diagonal_fisher(m, run, kind="true")
    params = [p for p in m.parameters() if p.requires_grad]
    ref = [torch.zeros_like(p) for p in params]
    for p_i in pairs:
        batch = default_collate([p_i])
        for c in range(len(CLASSES)):
            logp = torch.log_softmax(prompted.label_logits(m, batch), dim=-1)[0]
            g = torch.autograd.grad(-logp[c], params, allow_unused=True)
            for r, gi in zip(ref, g):
                if gi is not None:
                    r.add_(logp[c].exp().detach() * gi * gi / len(pairs))
    for a, b in zip(got, ref):
        torch.testing.assert_close(a.double(), b, rtol=1e-4, atol=1e-10)


def test_reinitialize_gives_clip_its_config_temperature(clip_data):
    """The bad teacher is a freshly initialised copy: CLIP's logit_scale (set in __init__, not by _init_weights)
    comes back to ``config.logit_scale_init_value``, every other weight is redrawn."""
    import math

    from erasus.strategies.base import reinitialize

    model, _, _, _ = clip_data
    fresh = reinitialize(model, seed=3)
    assert math.isclose(float(fresh.logit_scale), model.config.logit_scale_init_value, rel_tol=1e-6)
    assert not math.isclose(float(model.logit_scale), model.config.logit_scale_init_value, rel_tol=1e-3)
    assert not torch.equal(fresh.visual_projection.weight, model.visual_projection.weight)
