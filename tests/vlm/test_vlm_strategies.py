"""contrastive_unlearning and clip_erase: their objectives' closed-form properties on a tiny CLIP."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils.data import default_collate

import erasus
from erasus.errors import InvalidInputError
from erasus.strategies.vlm.clip_erase import uniform_kl
from erasus.tasks.contrastive import ContrastiveTask


def _cos(model, pairs):
    with torch.no_grad():
        v, t = ContrastiveTask().embed(model, default_collate(pairs))
    return (v * t).sum(-1)


def test_contrastive_unlearning_pushes_forget_pairs_below_the_margin_side(clip_data):
    model, forget, retain, _ = clip_data
    out = erasus.get_strategy("contrastive_unlearning", lr=1e-3, margin=0.0).unlearn(
        model=model, forget_data=forget, retain_data=retain, steps=15, progress=False)
    assert float(_cos(out, forget).mean()) < float(_cos(model, forget).mean()) - 0.2
    assert float(_cos(out, retain).mean()) > float(_cos(out, forget).mean())


def test_a_margin_already_met_changes_nothing(clip_data):
    model, forget, _, _ = clip_data
    # every cosine is <= 1: with margin 1 the hinge is 0 everywhere, so no gradient and no step
    out = erasus.get_strategy("contrastive_unlearning", lr=1e-3, margin=1.0, alpha=0.0).unlearn(
        model=model, forget_data=forget, steps=3, progress=False)
    for a, b in zip(model.parameters(), out.parameters()):
        assert torch.equal(a, b)
    with pytest.raises(InvalidInputError, match="margin"):
        erasus.get_strategy("contrastive_unlearning", margin=2.0).unlearn(model=model, forget_data=forget, steps=1,
                                                                           progress=False)


def test_uniform_kl_closed_form():
    z = torch.tensor([[0.0, 0.0, 0.0], [1.0, 2.0, 3.0]])
    p = z.softmax(-1)
    ref = (torch.full_like(p, 1 / 3) * (torch.log(torch.full_like(p, 1 / 3)) - p.log())).sum(-1)
    torch.testing.assert_close(uniform_kl(z), ref)
    assert float(uniform_kl(z)[0]) == pytest.approx(0.0, abs=1e-7) and math.isfinite(float(uniform_kl(z)[1]))


def test_clip_erase_flattens_forget_associations_and_consistency_limits_the_cascade(clip_data):
    model, forget, retain, _ = clip_data
    common = dict(model=model, forget_data=forget, retain_data=retain, steps=10, progress=False)
    loose = erasus.get_strategy("clip_erase", lr=1e-3, alpha=0.0, beta=0.0).unlearn(**common)
    tight = erasus.get_strategy("clip_erase", lr=1e-3, alpha=0.0, beta=50.0).unlearn(**common)
    assert float(_cos(loose, forget).mean()) < float(_cos(model, forget).mean())
    moved = {name: erasus.get_metric("cascade").compute(m, retain, original=model) for name, m in
             (("loose", loose), ("tight", tight))}
    assert moved["tight"]["cascade_text_cosine_distance"] < moved["loose"]["cascade_text_cosine_distance"]
    assert moved["tight"]["cascade_image_cosine_distance"] < moved["loose"]["cascade_image_cosine_distance"]
    with pytest.raises(InvalidInputError, match="retain"):
        erasus.get_strategy("clip_erase").unlearn(model=model, forget_data=forget, steps=1, progress=False)


def test_concept_projection_closed_form(clip_data, processor):
    from vlm_helpers import CLASSES, TEMPLATES

    from erasus.models import CLIPWrapper
    from erasus.strategies.vlm.concept_projection import concept_projector
    from erasus.tasks.contrastive import image_embeddings

    model, _, _, test = clip_data
    forget_prompts = [t.format(CLASSES[0]) for t in TEMPLATES]
    retain_prompts = [t.format(c) for c in CLASSES[1:] for t in TEMPLATES]
    clip = CLIPWrapper(model, processor=processor)
    out = erasus.get_strategy("concept_projection").unlearn(model=clip, forget_data=forget_prompts,
                                                            retain_data=retain_prompts, progress=False)
    pix = default_collate(test)["pixel_values"]

    def text(m, prompts):
        enc = processor.tokenizer(prompts, padding=True, return_tensors="pt")
        with torch.no_grad():
            return torch.nn.functional.normalize(m.get_text_features(enc["input_ids"], enc["attention_mask"]), dim=-1)

    with torch.no_grad():
        v0, v1 = image_embeddings(clip, pix), image_embeddings(out, pix)
    er = text(clip, retain_prompts)
    # retain-class logits of every image are unchanged; the text tower did not move
    torch.testing.assert_close(v1 @ er.T, v0 @ er.T, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(text(out, forget_prompts), text(clip, forget_prompts))
    # what the retain prompts do not explain of the forget prompts is gone from every image embedding
    ef = text(clip, forget_prompts).double()
    p = concept_projector(ef, er.double())
    resid = ef - ef @ torch.linalg.pinv(er.double()) @ er.double()
    assert float((v1.double() @ resid.T).abs().max()) < 1e-4 * float(v0.abs().max() * resid.norm(dim=1).max())
    assert torch.allclose(p @ er.double().T, er.double().T, atol=1e-9)
    # without retain prompts (16-d joint space: the retain prompts span most of it) the full projection zeroes
    # every image's similarity to the forget prompts, and zero-shot accuracy on class 0 collapses
    full = erasus.get_strategy("concept_projection").unlearn(model=clip, forget_data=forget_prompts, progress=False)
    with torch.no_grad():
        assert float((image_embeddings(full, pix) @ ef.float().T).abs().max()) < 1e-4
    prompts = [[t.format(c) for t in TEMPLATES] for c in CLASSES]
    zs = erasus.get_metric("zero_shot_accuracy", class_prompts=prompts, forget_classes=[0])
    before, after = zs.compute(clip, test), zs.compute(full, test)
    assert after["zero_shot_top1_forget"] < before["zero_shot_top1_forget"] - 0.5


def test_concept_projection_refuses_images_and_needs_a_tokenizer(clip_data):
    model, forget, _, _ = clip_data
    with pytest.raises(erasus.ErasusError, match="prompt strings"):
        erasus.get_strategy("concept_projection", tokenizer=object()).unlearn(model=model, forget_data=forget,
                                                                               progress=False)
    with pytest.raises(InvalidInputError, match="tokenizer"):
        erasus.get_strategy("concept_projection").unlearn(model=model, forget_data=["a dog"], progress=False)
