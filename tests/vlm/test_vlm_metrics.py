"""Retrieval Recall@K, zero-shot accuracy, pair cosine and cascade against brute force."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import default_collate

import erasus
from erasus.errors import InvalidInputError
from erasus.metrics.contrastive import embedding_shift, matched_pair_cosine, retrieval_recall


def _brute_recall(v, t, owner, k):
    v = v / np.linalg.norm(v, axis=1, keepdims=True)
    t = t / np.linalg.norm(t, axis=1, keepdims=True)
    sim = v @ t.T
    i2t, n_img = 0, 0
    for i in range(v.shape[0]):
        mine = [j for j in range(t.shape[0]) if owner[j] == i]
        if not mine:
            continue
        n_img += 1
        best = max(sim[i, j] for j in mine)
        rank = sum(1 for j in range(t.shape[0]) if sim[i, j] > best + 1e-12)
        i2t += rank < k
    t2i = 0
    for j in range(t.shape[0]):
        rank = sum(1 for i in range(v.shape[0]) if sim[i, j] > sim[owner[j], j] + 1e-12)
        t2i += rank < k
    return i2t / n_img, t2i / t.shape[0]


@settings(max_examples=30, deadline=None)
@given(st.integers(2, 9), st.integers(0, 4), st.integers(0, 10_000), st.booleans())
def test_recall_matches_brute_force(n, extra, seed, quantize):
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(n, 3))
    owner = np.concatenate([np.arange(n), rng.integers(0, n, size=extra)])
    t = rng.normal(size=(owner.size, 3))
    if quantize:  # exact ties: the match wins them, whatever the float rounding
        v, t = np.round(v), np.round(t)
        v[np.linalg.norm(v, axis=1) == 0] = 1.0
        t[np.linalg.norm(t, axis=1) == 0] = 1.0
    got = retrieval_recall(v, t, ks=(1, 2, 5), text_to_image=owner)
    for k in (1, 2, 5):
        i2t, t2i = _brute_recall(v, t, owner, k)
        assert got[f"image_to_text_recall@{k}"] == pytest.approx(i2t)
        assert got[f"text_to_image_recall@{k}"] == pytest.approx(t2i)


def test_recall_of_identical_embeddings_is_one_and_inputs_are_checked():
    e = torch.eye(4)
    assert retrieval_recall(e, e, ks=(1,))["mean_recall@1"] == 1.0
    with pytest.raises(InvalidInputError, match="text_to_image"):
        retrieval_recall(torch.randn(3, 2), torch.randn(4, 2))
    with pytest.raises(InvalidInputError, match="NaN"):
        retrieval_recall(torch.tensor([[float("nan"), 1.0]]), torch.ones(1, 2))
    with pytest.raises(InvalidInputError, match="ks"):
        retrieval_recall(e, e, ks=(0,))


def test_pair_cosine_and_shift_closed_forms():
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    b = torch.tensor([[1.0, 1.0], [0.0, 1.0]])
    assert matched_pair_cosine(a, b) == pytest.approx((2 ** -0.5 + 1) / 2)
    shift = embedding_shift(a, b)
    assert shift["cosine_distance"] == pytest.approx((1 - 2 ** -0.5) / 2)
    assert shift["relative_l2"] == pytest.approx((1 + 0.5) / 2)


def test_retrieval_metric_on_a_clip_model_equals_brute_force(clip_data):
    model, _, _, test = clip_data
    got = erasus.get_metric("retrieval").compute(model, test)
    b = default_collate(test)
    with torch.no_grad():
        o = model(pixel_values=b["pixel_values"], input_ids=b["input_ids"], attention_mask=b["attention_mask"])
    v, t = o.image_embeds.double().numpy(), o.text_embeds.double().numpy()
    for k in (1, 5, 10):
        i2t, t2i = _brute_recall(v, t, np.arange(len(test)), k)
        assert got[f"image_to_text_recall@{k}"] == pytest.approx(i2t)
        assert got[f"text_to_image_recall@{k}"] == pytest.approx(t2i)
    assert got["pair_cosine"] == pytest.approx(float((o.image_embeds * o.text_embeds).sum(-1).mean()), abs=1e-6)


def test_zero_shot_accuracy_on_forget_and_retain_classes(clip_data, processor):
    from vlm_helpers import CLASSES, TEMPLATES

    model, _, _, test = clip_data
    prompts = [[t.format(c) for t in TEMPLATES] for c in CLASSES]
    metric = erasus.get_metric("zero_shot_accuracy", class_prompts=prompts, tokenizer=processor, forget_classes=[0],
                               topk=(1, 2))
    got = metric.compute(model, test)
    logits, labels = metric.logits(model, test)
    pred = logits.argmax(1)
    forget = labels == 0
    assert got["zero_shot_top1"] == pytest.approx(float((pred == labels).double().mean()))
    assert got["zero_shot_top1_forget"] == pytest.approx(float((pred[forget] == 0).double().mean()))
    assert got["zero_shot_top1_retain"] == pytest.approx(float((pred[~forget] == labels[~forget]).double().mean()))
    top2 = logits.topk(2, 1).indices
    assert got["zero_shot_top2"] == pytest.approx(float((top2 == labels[:, None]).any(1).double().mean()))
    # the trained tiny CLIP does classify its four colours
    assert got["zero_shot_top1"] >= 0.75
    with pytest.raises(InvalidInputError, match="forget_classes"):
        erasus.get_metric("zero_shot_accuracy", class_prompts=prompts, tokenizer=processor,
                          forget_classes=[7]).compute(model, test)


def test_cascade_is_zero_for_an_unchanged_tower(clip_data):
    model, forget, retain, _ = clip_data
    same = erasus.get_metric("cascade").compute(model, retain, original=model)
    assert same["cascade_image_cosine_distance"] == pytest.approx(0.0, abs=1e-7)
    out = erasus.get_strategy("modality_decoupling", vision_lr=1e-3, text_lr=0.0).unlearn(
        model=model, forget_data=forget, steps=3, progress=False)
    moved = erasus.get_metric("cascade").compute(out, retain, original=model)
    assert abs(moved["cascade_text_cosine_distance"]) < 1e-12 and moved["cascade_text_relative_l2"] == 0.0
    assert moved["cascade_image_cosine_distance"] > 1e-4
    with pytest.raises(InvalidInputError, match="original"):
        erasus.get_metric("cascade").compute(model, retain)


def test_metrics_refuse_non_contrastive_models():
    with pytest.raises(InvalidInputError, match="contrastive"):
        erasus.get_metric("retrieval").compute(torch.nn.Linear(3, 2), (torch.randn(4, 3), torch.tensor([0, 1, 0, 1])))


def test_bank_scores_match_a_per_pair_loop():
    from erasus.metrics.contrastive import bank_scores

    g = torch.Generator().manual_seed(0)
    v, t = F.normalize(torch.randn(5, 4, generator=g), dim=1), F.normalize(torch.randn(5, 4, generator=g), dim=1)
    vb, tb = F.normalize(torch.randn(3, 4, generator=g), dim=1), F.normalize(torch.randn(3, 4, generator=g), dim=1)
    loss, ent = bank_scores(v, t, vb, tb, scale=7.0, same=False)
    for i in range(5):
        a = 7.0 * torch.cat([(v[i] @ t[i])[None], tb @ v[i]]).double()
        b = 7.0 * torch.cat([(v[i] @ t[i])[None], vb @ t[i]]).double()
        ref_loss = (-a.log_softmax(0)[0] - b.log_softmax(0)[0]) / 2
        ref_ent = (-(a.softmax(0) * a.log_softmax(0)).sum() - (b.softmax(0) * b.log_softmax(0)).sum()) / 2
        assert float(loss[i]) == pytest.approx(float(ref_loss), abs=1e-6)
        assert float(ent[i]) == pytest.approx(float(ref_ent), abs=1e-6)
    # leave-one-out on the bank itself: pair i never meets its own caption as a negative
    loo, _ = bank_scores(v, t, v, t, scale=7.0, same=True)
    a = 7.0 * torch.cat([(v[0] @ t[0])[None], t[1:] @ v[0]]).double()
    b = 7.0 * torch.cat([(v[0] @ t[0])[None], v[1:] @ t[0]]).double()
    assert float(loo[0]) == pytest.approx(float((-a.log_softmax(0)[0] - b.log_softmax(0)[0]) / 2), abs=1e-6)


def test_membership_attacks_on_clip_use_the_bank_scores(clip_data):
    from erasus.metrics.contrastive import bank_scores, collect_embeddings
    from erasus.metrics.mia import entropy_mia
    from erasus.metrics.mia_loss import loss_threshold_attack

    model, forget, retain, test = clip_data
    got = erasus.get_metric("contrastive_mia").compute(model, forget, test)
    vf, tf, _ = collect_embeddings(model, forget)
    vt, tt, _ = collect_embeddings(model, test)
    s = float(model.logit_scale.exp())
    pick = torch.randperm(len(test), generator=torch.Generator().manual_seed(0))[: len(test) - 1]
    lf, ef = bank_scores(vf, tf, vt[pick], tt[pick], scale=s, same=False)
    lt, et = bank_scores(vt, tt, vt, tt, scale=s, same=True)
    ref = loss_threshold_attack(lf, lt)
    assert got["contrastive_mia_loss_auc"] == pytest.approx(ref["auc"])
    assert got["contrastive_mia_entropy_auc"] == pytest.approx(entropy_mia(ef, et)["mia_auc"])
    # the spec's MIAMetric on a CLIP model runs the entropy attack on the same scores
    mia = erasus.get_metric("mia").compute(model, forget, test, retain)
    _, er = bank_scores(*collect_embeddings(model, retain)[:2], vt[pick], tt[pick], scale=s, same=False)
    assert mia == pytest.approx(entropy_mia(ef, et, er))
    with pytest.raises(InvalidInputError, match="test"):
        erasus.get_metric("contrastive_mia").compute(model, forget, test[:1])


def test_retrieval_ranks_each_image_once_with_several_captions(clip_data):
    model, forget, retain, _ = clip_data
    # three captions of image A (forget[0]'s pixels) and one each of images B, C
    pairs = [dict(forget[0], image_index=torch.tensor(0)), dict(retain[0], image_index=torch.tensor(1)),
             dict(forget[0], input_ids=forget[1]["input_ids"], attention_mask=forget[1]["attention_mask"],
                  image_index=torch.tensor(0)),
             dict(retain[1], image_index=torch.tensor(2)),
             dict(forget[0], input_ids=forget[2]["input_ids"], attention_mask=forget[2]["attention_mask"],
                  image_index=torch.tensor(0))]
    got = erasus.get_metric("retrieval", ks=(1, 2)).compute(model, pairs)
    b = default_collate(pairs)
    with torch.no_grad():
        o = model(pixel_values=b["pixel_values"], input_ids=b["input_ids"], attention_mask=b["attention_mask"])
    v = o.image_embeds[[0, 1, 3]].double().numpy()
    t = o.text_embeds.double().numpy()
    for k in (1, 2):
        i2t, t2i = _brute_recall(v, t, np.array([0, 1, 0, 2, 0]), k)
        assert got[f"image_to_text_recall@{k}"] == pytest.approx(i2t)
        assert got[f"text_to_image_recall@{k}"] == pytest.approx(t2i)


def test_selection_features_image_text_and_joint(clip_data):
    from erasus.tasks.contrastive import ContrastiveTask

    model, forget, _, _ = clip_data
    b = default_collate(forget)
    with torch.no_grad():
        o = model(pixel_values=b["pixel_values"], input_ids=b["input_ids"], attention_mask=b["attention_mask"])
    for kind, ref in (("image", o.image_embeds), ("text", o.text_embeds),
                      ("joint", torch.cat([o.image_embeds, o.text_embeds], 1))):
        emb = erasus.features.embeddings(model, forget, task=ContrastiveTask(embedding=kind), progress=False)
        torch.testing.assert_close(emb, ref, rtol=1e-5, atol=1e-5)
    sel = erasus.get_selector("kcenter", seed=0).select(k=3, model=model, data=forget,
                                                        feature_options={"task": ContrastiveTask(embedding="image")})
    assert len(sel) == 3
