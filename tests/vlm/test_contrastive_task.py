"""ContrastiveTask against transformers' own CLIP loss and a float64 brute force."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import default_collate

import erasus
from erasus.errors import ErasusTypeError, InvalidInputError
from erasus.models import CLIPWrapper
from erasus.tasks import infer_task
from erasus.tasks.contrastive import ContrastiveTask


def _batch(pairs):
    return default_collate(pairs)


def test_infer_task_picks_contrastive_for_clip_models(clip_data, processor):
    model, forget, _, _ = clip_data
    assert infer_task(model, forget).name == "contrastive"
    assert infer_task(CLIPWrapper(model, processor=processor)).name == "contrastive"


def test_mean_per_sample_loss_is_clip_training_loss(clip_data):
    model, forget, retain, _ = clip_data
    b = _batch(forget[:5] + retain[:7])
    task = ContrastiveTask()
    with torch.no_grad():
        ours = task.per_sample_loss(model, b)
        ref = model(pixel_values=b["pixel_values"], input_ids=b["input_ids"], attention_mask=b["attention_mask"],
                    return_loss=True)
    assert ours.shape == (12,)
    torch.testing.assert_close(ours.mean(), ref.loss, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(task.outputs(model, b), ref.logits_per_image, rtol=1e-5, atol=1e-5)


def test_per_sample_loss_matches_float64_brute_force(clip_data):
    model, forget, retain, _ = clip_data
    b = _batch(forget[:3] + retain[:4])
    with torch.no_grad():
        out = model(pixel_values=b["pixel_values"], input_ids=b["input_ids"], attention_mask=b["attention_mask"])
        v, t = out.image_embeds.double(), out.text_embeds.double()  # transformers normalises these
        s = model.logit_scale.exp().double()
        losses = ContrastiveTask().per_sample_loss(model, b).double()
    for i in range(7):
        i2t = -(s * v[i] @ t.T).log_softmax(0)[i]
        t2i = -(s * t[i] @ v.T).log_softmax(0)[i]
        assert abs(float(losses[i]) - float((i2t + t2i) / 2)) < 1e-4


def test_tuple_batches_equal_dict_batches(clip_data):
    model, forget, _, _ = clip_data
    b = _batch(forget[:4])
    task = ContrastiveTask()
    with torch.no_grad():
        d = task.per_sample_loss(model, b)
        t3 = task.per_sample_loss(model, (b["pixel_values"], b["input_ids"], b["attention_mask"]))
    torch.testing.assert_close(d, t3)


def test_bad_batches_are_refused_before_any_forward(clip_data):
    model, forget, _, _ = clip_data
    b = _batch(forget[:4])
    task = ContrastiveTask()
    with pytest.raises(InvalidInputError, match="images but"):
        task.per_sample_loss(model, {**b, "input_ids": b["input_ids"][:3], "attention_mask": b["attention_mask"][:3]})
    with pytest.raises(InvalidInputError, match="needs pixel_values and input_ids"):
        task.per_sample_loss(model, {"pixel_values": b["pixel_values"]})
    with pytest.raises(ErasusTypeError, match="tokenize captions"):
        task.per_sample_loss(model, (b["pixel_values"], ["a cat"] * 4))
    with pytest.raises(InvalidInputError, match="temperature"):
        ContrastiveTask(temperature=0)
    with pytest.raises(InvalidInputError, match="tokenizer"):
        ContrastiveTask(class_prompts=["a", "b"])


def test_separable_loss_against_a_bank_is_the_formula(clip_data):
    model, forget, retain, _ = clip_data
    data = forget + retain
    sep = ContrastiveTask().separable(model, data, negatives=10, seed=3)
    b = _batch(forget[:3])
    with torch.no_grad():
        ours = sep.per_sample_loss(model, b).double()
        bank = _batch([data[i] for i in torch.randperm(len(data), generator=torch.Generator().manual_seed(3))[:10]])
        ob = model(**{k: bank[k] for k in ("pixel_values", "input_ids", "attention_mask")})
        o = model(**{k: b[k] for k in ("pixel_values", "input_ids", "attention_mask")})
        s = model.logit_scale.exp().double()
        vb, tb, v, t = (x.double() for x in (ob.image_embeds, ob.text_embeds, o.image_embeds, o.text_embeds))
    for i in range(3):
        i2t = torch.cat([(v[i] * t[i]).sum()[None], v[i] @ tb.T]) * s
        t2i = torch.cat([(v[i] * t[i]).sum()[None], t[i] @ vb.T]) * s
        ref = (-i2t.log_softmax(0)[0] - t2i.log_softmax(0)[0]) / 2
        assert abs(float(ours[i]) - float(ref)) < 1e-4
    # a pair's separable loss does not depend on which other pairs share its batch
    with torch.no_grad():
        alone = sep.per_sample_loss(model, _batch(forget[:1]))
    torch.testing.assert_close(alone[0], ours[0].float(), rtol=1e-5, atol=1e-5)


def test_per_sample_gradients_of_clip_match_one_sample_autograd(clip_data):
    model, forget, retain, _ = clip_data
    data = forget[:4] + retain[:2]
    sep = ContrastiveTask().separable(model, data)
    fast = erasus.features.per_sample_gradients(model, data, proj_dim=24, projection="rademacher", seed=1,
                                                batch_size=6, progress=False)
    # brute force: the full gradient of each sample's separable loss, then the same JL projection
    names = [n for n, _ in model.named_parameters()]
    rows = []
    for i in range(len(data)):
        model.zero_grad()
        sep.per_sample_loss(model, _batch(data[i:i + 1]))[0].backward()
        rows.append(torch.cat([dict(model.named_parameters())[n].grad.reshape(-1) for n in names]))
    model.zero_grad()
    grads = torch.stack(rows)
    ref = erasus.kernels.jl_project(grads, 24, seed=1, kind="rademacher", backend="torch")
    torch.testing.assert_close(fast, ref, rtol=2e-3, atol=2e-3 * float(ref.abs().max()))


def test_joint_embeddings_for_selection_are_normalised_towers(clip_data):
    model, forget, _, _ = clip_data
    emb = erasus.features.embeddings(model, forget, progress=False)
    b = _batch(forget)
    with torch.no_grad():
        o = model(**{k: b[k] for k in ("pixel_values", "input_ids", "attention_mask")})
    torch.testing.assert_close(emb, torch.cat([o.image_embeds, o.text_embeds], 1), rtol=1e-5, atol=1e-5)


def test_zero_shot_logits_use_prompt_ensembles(clip_data, processor):
    from vlm_helpers import CLASSES, TEMPLATES

    model, _, _, test = clip_data
    prompts = [[t.format(c) for t in TEMPLATES] for c in CLASSES]
    task = ContrastiveTask(class_prompts=prompts, tokenizer=processor)
    b = _batch(test[:5])
    with torch.no_grad():
        logits = task.zero_shot_logits(model, {"pixel_values": b["pixel_values"]})
        v = F.normalize(model.get_image_features(pixel_values=b["pixel_values"]).pooler_output, dim=-1)
        cls = []
        for group in prompts:
            enc = processor.tokenizer(group, padding=True, return_tensors="pt")
            e = F.normalize(model.get_text_features(**enc).pooler_output, dim=-1)
            cls.append(F.normalize(e.mean(0), dim=-1))
        ref = model.logit_scale.exp() * v @ torch.stack(cls).T
    torch.testing.assert_close(logits, ref, rtol=1e-5, atol=1e-4)
    assert task.num_classes(model, b) == 4
