"""LLM metrics against rouge-score, scipy, sklearn and hand computations (OpenUnlearning definitions)."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
import torch
from erasus.data.llm import LMDataset, format_multiple_choice
from erasus.errors import InvalidInputError
from erasus.metrics import llm as M
from erasus.registry import get_metric
from erasus.tasks.causal_lm import IGNORE_INDEX, CausalLMTask
from llm_helpers import FORGET, PERTURBED, RETAIN, tiny_gpt2
from rouge_score import rouge_scorer
from scipy.stats import ks_2samp
from sklearn.metrics import roc_auc_score


def test_rouge_recall_matches_rouge_score():
    preds = ["Alba Quist wrote the red book .", "the blue book", "nothing here", "Cato Wren was born in Ostby"]
    refs = ["Alba Quist wrote the red book.", "Cato Wren wrote the blue book.", "Alba Quist won", "born in Ostby"]
    scorer = rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=True)
    got = M.rouge_recall(preds, refs)
    for i, (p, r) in enumerate(zip(preds, refs)):
        s = scorer.score(r, p)
        assert got["rougeL_recall"][i] == pytest.approx(s["rougeL"].recall)
        assert got["rouge1_recall"][i] == pytest.approx(s["rouge1"].recall)
    assert got["rougeL_recall"][0] == 1.0 and got["rougeL_recall"][2] == pytest.approx(0.0)


def test_rouge_metric_on_memorised_and_random_model(memorised, tokenizer):
    model, _, _ = memorised
    records = [{"prompt": q, "answer": a} for q, a in FORGET]
    assert get_metric("rouge_l", tokenizer=tokenizer, max_new_tokens=12).compute(model, records)["rougeL_recall"] == 1.0
    fresh = tiny_gpt2(len(tokenizer), seed=3)
    assert get_metric("rouge_l", tokenizer=tokenizer, max_new_tokens=12).compute(fresh, records)["rougeL_recall"] < 0.5


def test_truth_ratio_and_aggregators_closed_form():
    correct = np.array([0.5, 1.0, 2.0])
    wrong = np.array([[1.0, 3.0], [1.0, 1.0], [0.5, 1.5]])
    want = np.exp(-wrong.mean(1)) / (np.exp(-correct) + 1e-10)
    r = M.truth_ratios(correct, wrong)
    np.testing.assert_allclose(r, want, rtol=1e-12)
    assert M.aggregate_truth_ratio(r) == pytest.approx(np.mean(np.minimum(want, 1 / want)))
    assert M.aggregate_truth_ratio(r, aggregator="true_better") == pytest.approx(np.mean(np.maximum(0, 1 - want)))
    with pytest.raises(InvalidInputError, match="aggregator"):
        M.aggregate_truth_ratio(r, aggregator="best")


def test_forget_quality_is_the_ks_p_value():
    a, b = np.arange(5.0), np.arange(5.0) + 10
    assert M.forget_quality(a, b) == pytest.approx(2 / 252)  # exact two-sided KS, disjoint samples of 5
    assert M.forget_quality(a, a) == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    x, y = rng.random(30), rng.random(40)
    assert M.forget_quality(x, y) == pytest.approx(ks_2samp(x, y).pvalue)


def test_model_utility_and_privleak_closed_forms():
    assert M.model_utility([0.2, 0.5, 1.0]) == pytest.approx(3 / (5 + 2 + 1))
    assert M.model_utility([0.3, 0.0]) == 0.0
    assert M.privleak(0.8, 0.5) == pytest.approx(60.0)
    with pytest.raises(InvalidInputError):
        M.privleak(0.8, 0.0)


def test_exact_memorization_and_extraction_strength_by_hand():
    matches = [np.array([1, 0, 1, 1], bool), np.array([1, 1, 1], bool), np.array([0, 0], bool), np.array([1, 1, 0], bool)]
    np.testing.assert_allclose(M.exact_memorization(matches), [0.75, 1.0, 0.0, 2 / 3])

    def brute(m):  # smallest k whose suffix is all correct
        n = len(m)
        return next((1 - k / n for k in range(n + 1) if all(m[k:])), 0.0)

    np.testing.assert_allclose(M.extraction_strength(matches), [brute(m) for m in matches])


def test_min_k_and_zlib_by_hand():
    lp = [np.array([-0.1, -3.0, -0.5, -2.0, -1.0]), np.array([-4.0])]
    np.testing.assert_allclose(M.min_k_score(lp, k=0.4), [(3.0 + 2.0) / 2, 4.0])
    np.testing.assert_allclose(M.min_k_score(lp, k=0.1), [3.0, 4.0])  # at least one token
    texts = ["aaaa aaaa aaaa", "the quick brown fox"]
    np.testing.assert_allclose(M.zlib_score([1.0, 2.0], texts),
                               [1.0 / len(zlib.compress(texts[0].encode())), 2.0 / len(zlib.compress(texts[1].encode()))])


def test_mia_auc_matches_sklearn_convention():
    f, h = np.array([0.1, 0.4, 0.35]), np.array([0.8, 0.3, 0.9, 0.5])
    want = roc_auc_score(np.r_[np.zeros(3), np.ones(4)], np.r_[f, h])
    assert M.mia_auc(f, h) == pytest.approx(want)


def test_token_stats_match_hand_computation(tokenizer):
    model = tiny_gpt2(len(tokenizer), seed=1)
    ds = LMDataset([{"prompt": q, "answer": a} for q, a in FORGET[:2]], tokenizer, max_length=32)
    stats = M.token_stats(model, ds)
    with torch.no_grad():
        logits = model(input_ids=ds.batch["input_ids"], attention_mask=ds.batch["attention_mask"]).logits.double()
    for i in range(2):
        pos = [j for j in range(1, ds.batch["input_ids"].shape[1]) if ds.batch["labels"][i, j] != IGNORE_INDEX]
        logp = torch.log_softmax(logits[i], -1)
        want_lp = [float(logp[j - 1, ds.batch["input_ids"][i, j]]) for j in pos]
        p = logp.exp()
        want_mu = [float((p[j - 1] * logp[j - 1]).sum()) for j in pos]
        want_sigma = [float(((p[j - 1] * (logp[j - 1] - mu) ** 2).sum()).sqrt()) for j, mu in zip(pos, want_mu)]
        np.testing.assert_allclose(stats.logp[i], want_lp, rtol=1e-6)
        np.testing.assert_allclose(stats.mu[i], want_mu, rtol=1e-6)
        np.testing.assert_allclose(stats.sigma[i], want_sigma, rtol=1e-6)
        z = (np.array(want_lp) - want_mu) / np.array(want_sigma)
        assert M.min_k_plus_plus_score([stats.logp[i]], [stats.mu[i]], [stats.sigma[i]])[0] == pytest.approx(
            -np.sort(z)[: max(1, int(len(z) * 0.4))].mean())
    ppl = np.exp(-np.concatenate(stats.logp).mean())
    assert get_metric("perplexity").compute(model, ds)["perplexity"] == pytest.approx(ppl, rel=1e-6)
    with torch.no_grad():
        probs = torch.exp(-CausalLMTask().per_sample_loss(model, ds.batch)).mean()
    assert get_metric("answer_prob").compute(model, ds)["answer_prob"] == pytest.approx(float(probs), rel=1e-5)


def test_membership_attacks_separate_memorised_from_unseen(memorised, tokenizer):
    model, forget, _ = memorised
    unseen = LMDataset(["Alba Quist wrote the blue book.", "Cato Wren was born in Norvik.",
                        "What prize did Cato Wren write?", "the red book is a sea poems book."], tokenizer)
    for name in ("mia_lm_loss", "mia_zlib", "mia_min_k", "mia_min_k_plus_plus", "mia_gradnorm"):
        out = get_metric(name).compute(model, forget, unseen)
        (key, auc), = out.items()
        assert key == f"{name.replace('mia_lm_loss', 'mia_loss')}_auc"
        assert 0.0 <= auc <= 1.0
    loss_scores = M.token_stats(model, forget).avg_nll, M.token_stats(model, unseen).avg_nll
    assert get_metric("mia_lm_loss").compute(model, forget, unseen)["mia_loss_auc"] == pytest.approx(
        roc_auc_score(np.r_[np.zeros(4), np.ones(4)], np.r_[loss_scores[0], loss_scores[1]]))
    assert get_metric("mia_lm_loss").compute(model, forget, unseen)["mia_loss_auc"] == 1.0
    # against itself the reference attack has no signal
    assert get_metric("mia_reference").compute(model, forget, unseen, reference_model=model)["mia_reference_auc"] == 0.5
    leak = get_metric("privleak", attack="loss").compute(model, forget, unseen)
    assert leak["privleak"] == pytest.approx(M.privleak(leak["mia_loss_auc"], 0.5))


def test_gradnorm_scores_by_hand(tokenizer):
    model = tiny_gpt2(len(tokenizer), seed=2)
    ds = LMDataset([{"prompt": q, "answer": a} for q, a in RETAIN[:2]], tokenizer)
    before = [p.detach().clone() for p in model.parameters()]
    got = M._grad_norm_scores(model, ds, tokenizer=tokenizer, p=2.0, max_length=512, device=None)
    for i in range(2):
        one = {k: v[i:i + 1] for k, v in ds.batch.items()}
        grads = torch.autograd.grad(CausalLMTask().per_sample_loss(model, one).sum(), list(model.parameters()))
        assert got[i] == pytest.approx(float(torch.stack([g.double().norm() for g in grads]).mean()), rel=1e-5)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert all(p.grad is None for p in model.parameters())


def test_truth_ratio_and_forget_quality_metrics(memorised, tokenizer):
    model, _, _ = memorised
    q, a = FORGET[0]
    records = [{"prompt": q, "answer": a, "paraphrased_answer": a, "perturbed_answer": PERTURBED[a]}] * 3
    stats = [M.token_stats(model, [{"prompt": q, "answer": x}], tokenizer=tokenizer).avg_nll[0]
             for x in [a, *PERTURBED[a]]]
    ratio = np.exp(-np.mean(stats[1:])) / (np.exp(-stats[0]) + 1e-10)
    got = get_metric("truth_ratio", tokenizer=tokenizer).compute(model, records)["truth_ratio"]
    assert got == pytest.approx(min(ratio, 1 / ratio), rel=1e-6)
    fq = get_metric("forget_quality", tokenizer=tokenizer).compute(model, records, reference_model=model)
    assert fq["forget_quality"] == pytest.approx(1.0)
    with pytest.raises(InvalidInputError, match="reference_model"):
        get_metric("forget_quality", tokenizer=tokenizer).compute(model, records)
    mu = get_metric("model_utility", tokenizer=tokenizer, max_new_tokens=12).compute(model, records)["model_utility"]
    prob = np.exp(-stats[0])
    assert mu == pytest.approx(3 / (1 / prob + 1 / 1.0 + 1 / max(0.0, 1 - ratio)), rel=1e-6)


def test_multiple_choice_matches_brute_force(memorised, tokenizer):
    model, _, _ = memorised
    records = [{"question": q, "choices": ["Alba Quist", "Cato Wren", "Norvik"], "answer": i % 3}
               for i, (q, _) in enumerate(FORGET + RETAIN)]
    task = CausalLMTask(tokenizer=tokenizer)
    want = []
    for r in records:
        prompt, conts = format_multiple_choice(r)
        scores = []
        for c in conts:
            enc = LMDataset([{"prompt": prompt, "answer": c}], tokenizer, add_eos=False).batch
            with torch.no_grad():
                scores.append(float(task.log_likelihood(model, enc)))
        want.append(int(np.argmax(scores)))
    got = M.multiple_choice_predictions(model, tokenizer, records)
    assert got.tolist() == want
    acc = get_metric("mc_accuracy", tokenizer=tokenizer).compute(model, records)["mc_accuracy"]
    assert acc == pytest.approx(np.mean(np.array(want) == [r["answer"] for r in records]))
