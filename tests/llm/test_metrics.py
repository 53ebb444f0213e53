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

SWAP = {"Alba": "Cato", "Quist": "Wren", "Cato": "Alba", "Wren": "Quist"}


def _swapped(text: str) -> str:
    return " ".join(SWAP.get(w, w) for w in text.split())


def _tofu_records(pairs, *, paraphrase: bool = True):
    """TOFU-style *_perturbed records: two perturbed answers (names swapped; the last word replaced) per pair,
    the answer without its full stop as the paraphrase."""
    out = []
    for q, a in pairs:
        r = {"prompt": q, "answer": a, "perturbed_answer": [_swapped(a), " ".join(a.split()[:-1]) + " poems."]}
        if paraphrase:
            r["paraphrased_answer"] = a.rstrip(".")
        out.append(r)
    return out


def _hand_token_logp(model, tokenizer, prompt: str, answer: str):
    """Label log-probs and the log-prob mean/std under the next-token distribution, float64, one unpadded
    sequence: prompt with BOS (BOS alone for plain text), then the answer and EOS (LMDataset's layout)."""
    p_ids = tokenizer(prompt)["input_ids"] if prompt else [tokenizer.bos_token_id]
    a_ids = tokenizer(answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    ids = torch.tensor([p_ids + a_ids])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[0].double(), -1)
    lp, mu, sd = [], [], []
    for j in range(len(p_ids), ids.shape[1]):
        row = logp[j - 1]
        lp.append(float(row[ids[0, j]]))
        m = float((row.exp() * row).sum())
        mu.append(m)
        sd.append(max(float((row.exp() * (row - m) ** 2).sum()), 1e-6) ** 0.5)
    return np.array(lp), np.array(mu), np.array(sd)


def _hand_avg_nll(model, tokenizer, prompt: str, answer: str) -> float:
    return -float(_hand_token_logp(model, tokenizer, prompt, answer)[0].mean())


def _hand_greedy(model, tokenizer, prompt: str, max_new_tokens: int) -> str:
    ids = tokenizer(prompt)["input_ids"]
    out = []
    with torch.no_grad():
        for _ in range(max_new_tokens):
            nxt = int(model(input_ids=torch.tensor([ids + out])).logits[0, -1].argmax())
            if nxt == tokenizer.eos_token_id:
                break
            out.append(nxt)
    return tokenizer.decode(out, skip_special_tokens=True).strip()


def _brute_auc(forget_scores, holdout_scores) -> float:
    """P(holdout score > forget score) + P(tie)/2 over all pairs (Mann-Whitney)."""
    pairs = [(h > f) + 0.5 * (h == f) for f in forget_scores for h in holdout_scores]
    return float(np.mean(pairs))


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
    # MUSE reports 1 - (forget = 0 AUC): a fully exposed forget set (AUC 1) against a chance-level retrained
    # model is -100 (MUSE's "target model" row), a model matching the retrained one is 0
    assert M.privleak(1.0, 0.5) == pytest.approx(-100.0)
    assert M.privleak(0.8, 0.5) == pytest.approx((0.2 - 0.5) / 0.5 * 100)
    assert M.privleak(0.3, 0.5) == pytest.approx(40.0)  # over-unlearned: forget looks less member than holdout
    assert M.privleak(0.62, 0.62) == 0.0
    for bad in ((0.8, 1.0), (1.2, 0.5), (0.5, -0.1)):
        with pytest.raises(InvalidInputError):
            M.privleak(*bad)


def test_answer_probability_with_options_closed_form():
    correct = np.array([0.5, 2.0])
    wrong = np.array([[1.0, 3.0, 0.2], [0.1, 2.0, 5.0]])
    want = [np.exp(-0.5) / (np.exp(-0.5) + np.exp(-1.0) + np.exp(-3.0) + np.exp(-0.2)),
            np.exp(-2.0) / (np.exp(-2.0) + np.exp(-0.1) + np.exp(-2.0) + np.exp(-5.0))]
    np.testing.assert_allclose(M.answer_probability_with_options(correct, wrong), want, rtol=1e-9)
    with pytest.raises(InvalidInputError, match="wrong_avg_nll"):
        M.answer_probability_with_options(correct, wrong[:1])


def test_exact_memorization_and_extraction_strength_by_hand():
    matches = [np.array([1, 0, 1, 1], bool), np.array([1, 1, 1], bool), np.array([0, 0], bool), np.array([1, 1, 0], bool),
               np.array([0], bool), np.array([0, 1, 1, 1, 1], bool)]
    np.testing.assert_allclose(M.exact_memorization(matches), [0.75, 1.0, 0.0, 2 / 3, 0.0, 0.8])
    # OpenUnlearning's loop (memorization.py): k runs over range(|a|) and stays at |a| - 1 on a full miss
    # (1/|a|, not 0), so even a wrong one-token answer scores 1
    np.testing.assert_allclose(M.extraction_strength(matches), [0.5, 1.0, 0.5, 1 / 3, 1.0, 0.8])

    def openunlearning(m):
        m = list(m)
        for k in range(len(m)):
            if m[k:] == [True] * (len(m) - k):
                break
        return 1 - k / len(m)

    rng = np.random.default_rng(0)
    random_matches = [rng.random(int(rng.integers(1, 8))) < 0.7 for _ in range(200)]
    np.testing.assert_allclose(M.extraction_strength(random_matches), [openunlearning(m) for m in random_matches])


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


UNSEEN = ["Alba Quist wrote the blue book.", "Cato Wren was born in Norvik.", "What prize did Cato Wren write?",
          "the red book is a sea poems book."]


def test_membership_attacks_match_hand_scores_and_brute_force_auc(tokenizer):
    """Every attack's AUC equals the pairwise (Mann-Whitney) AUC of scores computed by hand from the logits,
    on a random model where the AUCs are strictly between 0 and 1."""
    model, ref = tiny_gpt2(len(tokenizer), seed=4), tiny_gpt2(len(tokenizer), seed=6)
    forget_pairs = [("", a) for _, a in FORGET] + [("", a) for _, a in RETAIN[:2]]
    holdout_pairs = [("", t) for t in UNSEEN] + [("", a) for _, a in RETAIN[2:]]
    forget, holdout = (LMDataset([t for _, t in pairs], tokenizer) for pairs in (forget_pairs, holdout_pairs))

    def hand(m, pairs):
        return [_hand_token_logp(m, tokenizer, p, a) for p, a in pairs]

    def k_lowest(v, k=0.4):
        return -np.sort(v)[: max(1, int(v.size * k))].mean()

    tf, th, rf, rh = hand(model, forget_pairs), hand(model, holdout_pairs), hand(ref, forget_pairs), hand(ref, holdout_pairs)
    # OpenUnlearning compresses the decoded target (answer) tokens
    texts = {k: [tokenizer.decode(tokenizer(a, add_special_tokens=False)["input_ids"]) for _, a in pairs]
             for k, pairs in (("f", forget_pairs), ("h", holdout_pairs))}
    want = {
        "mia_loss_auc": ([-lp.mean() for lp, _, _ in tf], [-lp.mean() for lp, _, _ in th]),
        "mia_zlib_auc": ([-lp.mean() / len(zlib.compress(t.encode())) for (lp, _, _), t in zip(tf, texts["f"])],
                         [-lp.mean() / len(zlib.compress(t.encode())) for (lp, _, _), t in zip(th, texts["h"])]),
        "mia_min_k_auc": ([k_lowest(lp) for lp, _, _ in tf], [k_lowest(lp) for lp, _, _ in th]),
        "mia_min_k_plus_plus_auc": ([k_lowest((lp - mu) / sd) for lp, mu, sd in tf],
                                    [k_lowest((lp - mu) / sd) for lp, mu, sd in th]),
        "mia_reference_auc": ([r[0].mean() - t[0].mean() for t, r in zip(tf, rf)],
                              [r[0].mean() - t[0].mean() for t, r in zip(th, rh)]),
    }
    got = {}
    for name in ("mia_lm_loss", "mia_zlib", "mia_min_k", "mia_min_k_plus_plus", "mia_reference"):
        kw = {"reference_model": ref} if name == "mia_reference" else {}
        got.update(get_metric(name, tokenizer=tokenizer).compute(model, forget, holdout, **kw))
    assert set(got) == set(want)
    for key, (f, h) in want.items():
        auc = _brute_auc(f, h)
        assert got[key] == pytest.approx(auc, abs=1e-12), key
    assert 0.0 < got["mia_loss_auc"] < 1.0 and got["mia_loss_auc"] != got["mia_reference_auc"]
    # PrivLeak with a retrained model: MUSE's relative difference of (1 - AUC)s
    leak = get_metric("privleak", attack="loss", tokenizer=tokenizer).compute(model, forget, holdout, reference_model=ref)
    ref_auc = _brute_auc([-lp.mean() for lp, _, _ in rf], [-lp.mean() for lp, _, _ in rh])
    assert leak["privleak"] == pytest.approx(((1 - got["mia_loss_auc"]) - (1 - ref_auc)) / (1 - ref_auc) * 100)


def test_memorised_forget_set_is_exposed_and_privleak_is_minus_100(memorised, tokenizer):
    model, forget, _ = memorised
    unseen = LMDataset(UNSEEN, tokenizer)
    for name in ("mia_lm_loss", "mia_zlib", "mia_min_k", "mia_min_k_plus_plus", "mia_gradnorm"):
        (key, auc), = get_metric(name).compute(model, forget, unseen).items()
        assert key == f"{name.replace('mia_lm_loss', 'mia_loss')}_auc"
        # every memorised answer scores below every unseen text: the attack separates them perfectly
        assert auc == 1.0, name
    # MUSE's target-model row: fully exposed against the default chance-level reference
    assert get_metric("privleak", attack="loss").compute(model, forget, unseen)["privleak"] == pytest.approx(-100.0)


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


def _hand_truth_ratio(model, tokenizer, r, correct_key):
    wrong = np.mean([_hand_avg_nll(model, tokenizer, r["prompt"], x) for x in r["perturbed_answer"]])
    return np.exp(-wrong) / (np.exp(-_hand_avg_nll(model, tokenizer, r["prompt"], r[correct_key])) + 1e-10)


def test_truth_ratio_and_forget_quality_against_hand_computation(memorised, tokenizer):
    model, _, _ = memorised
    other = tiny_gpt2(len(tokenizer), seed=3)
    records = _tofu_records(FORGET + RETAIN)
    r_model = np.array([_hand_truth_ratio(model, tokenizer, r, "paraphrased_answer") for r in records])
    r_other = np.array([_hand_truth_ratio(other, tokenizer, r, "paraphrased_answer") for r in records])
    got = get_metric("truth_ratio", tokenizer=tokenizer).compute(model, records)["truth_ratio"]
    assert got == pytest.approx(np.mean(np.minimum(r_model, 1 / r_model)), rel=1e-6)
    got = get_metric("truth_ratio", tokenizer=tokenizer, aggregator="true_better", correct_key="answer").compute(
        model, records)["truth_ratio"]
    r_answer = np.array([_hand_truth_ratio(model, tokenizer, r, "answer") for r in records])
    assert got == pytest.approx(np.mean(np.maximum(0, 1 - r_answer)), rel=1e-6)
    # the memorised model prefers its answers to their perturbations; a fresh one has no such preference
    assert r_answer.max() < 1.0 and np.median(r_other) > 2 * np.median(r_answer), (r_answer, r_other)
    fq = get_metric("forget_quality", tokenizer=tokenizer).compute(model, records, reference_model=other)
    assert fq["forget_quality"] == pytest.approx(ks_2samp(r_model, r_other).pvalue, rel=1e-6)
    with pytest.raises(InvalidInputError, match="reference_model"):
        get_metric("forget_quality", tokenizer=tokenizer).compute(model, records)
    with pytest.raises(InvalidInputError, match="paraphrased_answer"):
        get_metric("truth_ratio", tokenizer=tokenizer).compute(model, _tofu_records(FORGET, paraphrase=False))


def test_model_utility_is_toFU_nine_component_harmonic_mean(memorised, tokenizer):
    """retain: raw answer probability, ROUGE-L, truth ratio vs the paraphrase; real authors / world facts:
    probability normalized over the options, ROUGE-L, truth ratio vs the answer (no paraphrase there); all
    recomputed from the logits and a hand greedy decoder, ROUGE by rouge-score."""
    model, _, _ = memorised
    retain = _tofu_records(RETAIN)
    authors = _tofu_records(FORGET[:2], paraphrase=False)
    facts = _tofu_records(FORGET[2:] + [("Who wrote the blue book?", "Alba Quist wrote the blue book.")],
                          paraphrase=False)
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)

    def rouge(records):
        return np.mean([scorer.score(r["answer"], _hand_greedy(model, tokenizer, r["prompt"], 12))["rougeL"].recall
                        for r in records])

    want = {}
    p = [np.exp(-_hand_avg_nll(model, tokenizer, r["prompt"], r["answer"])) for r in retain]
    want["retain_Q_A_Prob"] = np.mean(p)
    want["retain_Q_A_ROUGE"] = rouge(retain)
    tr = np.array([_hand_truth_ratio(model, tokenizer, r, "paraphrased_answer") for r in retain])
    want["retain_Truth_Ratio"] = np.mean(np.maximum(0, 1 - tr))
    for name, records in (("ra", authors), ("wf", facts)):
        norm = []
        for r in records:
            pc = np.exp(-_hand_avg_nll(model, tokenizer, r["prompt"], r["answer"]))
            pw = [np.exp(-_hand_avg_nll(model, tokenizer, r["prompt"], x)) for x in r["perturbed_answer"]]
            norm.append(pc / (pc + sum(pw)))
        want[f"{name}_Q_A_Prob_normalised"] = np.mean(norm)
        want[f"{name}_Q_A_ROUGE"] = rouge(records)
        tr = np.array([_hand_truth_ratio(model, tokenizer, r, "answer") for r in records])
        want[f"{name}_Truth_Ratio"] = np.mean(np.maximum(0, 1 - tr))
    got = get_metric("model_utility", tokenizer=tokenizer, max_new_tokens=12).compute(model, retain, authors, facts)
    assert set(got) == {"model_utility", *want}
    for key, value in want.items():
        assert got[key] == pytest.approx(value, rel=1e-6, abs=1e-9), key
    assert 0.0 < min(want.values()) and want["wf_Q_A_ROUGE"] < 1.0  # no component degenerate
    assert got["model_utility"] == pytest.approx(9 / sum(1 / v for v in want.values()), rel=1e-6)
    # the options-normalized probability is not the raw one the old code reported
    raw_ra = np.mean([np.exp(-_hand_avg_nll(model, tokenizer, r["prompt"], r["answer"])) for r in authors])
    assert abs(raw_ra - got["ra_Q_A_Prob_normalised"]) > 1e-3
    # the sets given as options (what MetricSuite needs) give the same numbers
    as_options = get_metric("model_utility", tokenizer=tokenizer, max_new_tokens=12, real_authors=authors,
                            world_facts=facts).compute(model, retain)
    assert as_options == pytest.approx(got)
    with pytest.raises(InvalidInputError, match="paraphrased_answer"):
        get_metric("model_utility", tokenizer=tokenizer).compute(model, authors)
    uneven = [dict(facts[0], perturbed_answer=facts[0]["perturbed_answer"][:1]), *facts[1:]]
    with pytest.raises(InvalidInputError, match="same positive number"):
        get_metric("model_utility", tokenizer=tokenizer).compute(model, retain, authors, uneven)


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
