"""Zero-shot class unlearning with synthetic samples (Kravets & Namboodiri, WACV 2025) on a tiny CLIP: the
Lipschitz loss against its formula written out per sample, synthetic images against the model's own zero-shot
probabilities computed by hand, and the forgotten class measured on real images the method never saw."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import default_collate

import erasus
from erasus.strategies.vlm.zero_shot_class import _image_shape, lipschitz_loss, synthesize_class_images
from erasus.tasks.contrastive import ContrastiveTask
from vlm_helpers import CLASSES, make_pairs

PROMPTS = [f"a photo of a {c} square" for c in CLASSES]


def test_lipschitz_loss_is_the_official_formula():
    g = torch.Generator().manual_seed(0)
    v, t, vn = (torch.randn(5, 7, generator=g, dtype=torch.float64) for _ in range(3))
    x = torch.randn(5, 3, 4, 4, generator=g, dtype=torch.float64)
    xn = x + 0.3 * torch.randn(x.shape, generator=g, dtype=torch.float64)
    ref = 0.0
    for i in range(5):
        d_txt = math.sqrt(sum((float(a) - float(b)) ** 2 for a, b in zip(t[i], vn[i])))
        d_img = math.sqrt(sum((float(a) - float(b)) ** 2 for a, b in zip(v[i], vn[i])))
        d_in = math.sqrt(sum((float(a) - float(b)) ** 2 for a, b in zip(x[i].flatten(), xn[i].flatten())))
        ref += (d_txt + d_img) / (2 * d_in)
    assert math.isclose(float(lipschitz_loss(v, t, vn, x, xn)), ref, rel_tol=1e-12)


def _class_embeddings(model, processor):
    enc = processor.tokenizer(PROMPTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        t = model.get_text_features(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
    t = getattr(t, "pooler_output", t)
    return F.normalize(t, dim=-1)


def test_synthetic_images_are_what_the_model_calls_the_class(clip_data, processor):
    model, _, _, _ = clip_data
    ip = processor.image_processor
    classes = _class_embeddings(model, processor)
    x = synthesize_class_images(model, classes, 2, n=6, shape=_image_shape(model, None), mean=ip.image_mean,
                                std=ip.image_std, steps=300, generator=torch.Generator().manual_seed(0))
    assert x.shape == (6, 3, 16, 16)
    with torch.no_grad():
        v = model.get_image_features(pixel_values=x)
    v = F.normalize(getattr(v, "pooler_output", v), dim=-1)
    p = torch.softmax(model.logit_scale.exp() * v @ classes.T, dim=-1)
    assert bool((p.argmax(-1) == 2).all()) and bool((p[:, 2] > 0.8).all())
    mean = torch.tensor(ip.image_mean).reshape(1, 3, 1, 1)
    std = torch.tensor(ip.image_std).reshape(1, 3, 1, 1)
    pixels = x * std + mean
    assert float(pixels.min()) >= -1e-5 and float(pixels.max()) <= 1 + 1e-5  # valid images in [0, 1]
    assert all(p.requires_grad for p in model.parameters())  # the synthesis froze them only while it ran


def test_forgets_a_prompt_named_class_without_its_images(clip_data, processor):
    model, _, _, _ = clip_data
    before = {k: v.clone() for k, v in model.state_dict().items()}
    real = default_collate(make_pairs(processor, [0] * 16, seed=41))  # real red images: never shown to the method
    task = ContrastiveTask(class_prompts=PROMPTS, tokenizer=processor)

    def red_accuracy(m):
        with torch.no_grad():
            return float((task.zero_shot_logits(m, real).argmax(-1) == 0).float().mean())

    strategy = erasus.get_strategy("zero_shot_class_unlearning", tokenizer=processor, n_synthetic=16,
                                   synthesis_steps=300, lr=1e-2)
    out = strategy.unlearn(model=model, forget_data=[PROMPTS[0]], retain_data=PROMPTS[1:], progress=False)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert strategy.info_["start_synthetic_accuracy"] == 1.0
    assert strategy.info_["synthetic_accuracy"] <= 0.2  # the official stopping rule was reached
    assert red_accuracy(model) >= 0.9 and red_accuracy(out) <= 0.5
    assert torch.equal(out.logit_scale, model.logit_scale)
    changed = [not torch.equal(a, b) for a, b in zip(model.parameters(), out.parameters())]
    assert any(changed) and not all(changed)  # only the top-|grad| tensors of each step move


def test_names_classes_by_prompts_and_caps_steps(clip_data, processor):
    model, forget, retain, _ = clip_data
    with pytest.raises(erasus.errors.ErasusTypeError, match="prompt"):
        erasus.get_strategy("zero_shot_class_unlearning", tokenizer=processor).unlearn(
            model=model, forget_data=forget, retain_data=PROMPTS[1:], progress=False)
    s = erasus.get_strategy("zero_shot_class_unlearning", tokenizer=processor, n_synthetic=4, synthesis_steps=300,
                            lr=1e-2)
    s.unlearn(model=model, forget_data=[PROMPTS[1]], retain_data=[PROMPTS[0], PROMPTS[2], PROMPTS[3]], steps=1,
              progress=False)
    assert s.info_["optimizer_steps"] == 1
