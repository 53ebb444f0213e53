"""LLM unlearning metrics with OpenUnlearning's definitions (TOFU, MUSE, WMDP).

Pure functions work on per-sample statistics; the registered classes run a causal LM over a data set
(an :class:`erasus.data.llm.LMDataset`, a loader of :class:`~erasus.tasks.CausalLMTask` batches, or
records ``{"prompt", "answer", ...}`` plus ``tokenizer=``) and hand the statistics to the functions.

* answer probability (TOFU): ``p_i = exp(-(1/|a_i|) sum_t NLL_t)``, averaged over samples; on the real-authors
  and world-facts sets normalized over the answer options, ``p(a) / (p(a) + sum_j p(a'_j))`` (TOFU's
  ``aggregate_eval_stat.py``, OpenUnlearning's ``probability_w_options``).
* ROUGE-L recall of greedy generations against the answer (``rouge-score``, stemming on).
* truth ratio (TOFU): ``R_i = exp(-mean_j nll(perturbed_ij)) / exp(-nll(correct_i))`` with ``correct`` the
  paraphrased answer on forget/retain and the answer itself on real authors / world facts (which have no
  paraphrase); aggregated as ``mean(min(R, 1/R))`` on forget data, ``mean(max(0, 1 - R))`` elsewhere.
* forget quality: the two-sample KS test p-value between the forget truth ratios of the unlearned model
  and of a model retrained without the forget set.
* model utility: the harmonic mean of nine scores, answer probability / ROUGE-L recall / truth ratio on each of
  retain, real authors and world facts (OpenUnlearning's ``hm_aggregate`` over ``configs/eval/tofu_metrics/
  model_utility.yaml``).
* exact memorization (Tirumala et al., 2022): fraction of answer tokens the greedy next-token prediction gets
  right under teacher forcing; extraction strength (Carlini et al., 2021, as OpenUnlearning's
  ``memorization.py``): ``1 - k/|a|`` with ``k`` the shortest answer prefix after which the rest is predicted
  exactly, searched over ``k < |a|`` (so a full miss scores ``1/|a|``).
* membership attacks as ROC AUC with the OpenUnlearning convention (forget = 0, holdout = 1, score larger
  for non-members): LOSS (Yeom et al., 2018), ZLib (Carlini et al., 2021: avg NLL / zlib bytes), Min-K%
  (Shi et al., 2024: minus the mean of the k% lowest token log-probs), Min-K%++ (Zhang et al., 2024:
  token scores ``(log p(x_t) - mu_t) / sigma_t`` with ``mu_t, sigma_t^2`` the mean/variance of ``log p`` under
  the model's own next-token distribution), reference (``NLL_target - NLL_reference``) and gradient norm.
* PrivLeak (MUSE, Shi et al., 2024): ``(AUC_unlearned - AUC_retrained) / AUC_retrained * 100`` on MUSE's AUC,
  which is ``1 -`` the AUC above (OpenUnlearning's ``privacy.py``): ~-100 for a model that still holds the forget
  set, ~0 for one as private as the retrained model, positive when unlearning overshoots.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from scipy.stats import hmean, ks_2samp
from sklearn.metrics import roc_auc_score
from torch.utils.data import DataLoader, Dataset

from ..errors import ErasusTypeError, InvalidInputError, NonFiniteError, require
from ..registry import register_metric
from ..tasks.causal_lm import IGNORE_INDEX, CausalLMTask
from .base import Metric

__all__ = [
    "TokenStats",
    "aggregate_truth_ratio",
    "answer_probability",
    "answer_probability_with_options",
    "exact_memorization",
    "extraction_strength",
    "forget_quality",
    "generate_answers",
    "mia_auc",
    "min_k_plus_plus_score",
    "min_k_score",
    "model_utility",
    "multiple_choice_predictions",
    "perplexity",
    "privleak",
    "rouge_recall",
    "token_stats",
    "truth_ratios",
    "zlib_score",
]


# --------------------------------------------------------------------------- pure functions
def answer_probability(avg_nll: Any) -> np.ndarray:
    """Per-sample length-normalized answer probability ``exp(-avg_nll)``."""
    return np.exp(-_arr(avg_nll, "avg_nll"))


def answer_probability_with_options(correct_avg_nll: Any, wrong_avg_nll: Any) -> np.ndarray:
    """Per-sample probability of the correct answer normalized over the answer options,
    ``p(a) / (p(a) + sum_j p(a'_j) + 1e-10)`` with ``p = exp(-avg_nll)`` (OpenUnlearning's
    ``probability_w_options``; TOFU's "Prob." on real authors and world facts). ``wrong_avg_nll`` is (N, P)."""
    c = _arr(correct_avg_nll, "correct avg_nll")
    w = np.asarray(wrong_avg_nll, dtype=np.float64)
    if w.ndim != 2 or w.shape[0] != c.size or w.shape[1] == 0:
        raise InvalidInputError(f"wrong_avg_nll must be (N={c.size}, P>0) for N correct answers, got {w.shape}")
    _arr(w, "wrong avg_nll")
    p = np.exp(-c)
    return p / (p + np.exp(-w).sum(1) + 1e-10)


def perplexity(nll_sums: Any, token_counts: Any) -> float:
    """Corpus perplexity ``exp(sum_i NLL_i / sum_i |a_i|)`` (token-weighted)."""
    s, n = _arr(nll_sums, "nll_sums"), _arr(token_counts, "token_counts")
    if n.sum() <= 0:
        raise InvalidInputError("perplexity needs at least one scored token")
    return float(np.exp(s.sum() / n.sum()))


def exact_memorization(matches: Sequence[Any]) -> np.ndarray:
    """Per-sample fraction of answer tokens whose teacher-forced argmax equals the label."""
    return np.array([float(np.mean(np.asarray(m, dtype=np.float64))) for m in matches])


def extraction_strength(matches: Sequence[Any]) -> np.ndarray:
    """Per-sample ``1 - k/|a|`` with ``k`` the smallest prefix length in ``0 .. |a|-1`` after which predictions
    match labels on every position ``>= k``; when none does (the last token is wrong) the search ends at
    ``k = |a| - 1``, so a full miss scores ``1/|a|``, not 0 (OpenUnlearning ``extraction_strength``, whose
    ``for k in range(valid_len)`` loop leaves ``k`` at its last value; a one-token answer therefore always
    scores 1)."""
    out = []
    for m in matches:
        m = np.asarray(m, dtype=bool).reshape(-1)
        if m.size == 0:
            raise InvalidInputError("extraction strength needs at least one answer token per sample")
        wrong = np.flatnonzero(~m)
        k = 0 if wrong.size == 0 else min(int(wrong[-1]) + 1, m.size - 1)
        out.append(1.0 - k / m.size)
    return np.array(out)


def rouge_recall(predictions: Sequence[str], references: Sequence[str]) -> dict[str, np.ndarray]:
    """Per-sample ROUGE-1 and ROUGE-L recall of ``predictions`` against ``references`` (``rouge-score``,
    Porter stemming, as TOFU/OpenUnlearning)."""
    rouge = require("rouge_score.rouge_scorer", "llm", purpose="ROUGE")
    if len(predictions) != len(references):
        raise InvalidInputError(f"{len(predictions)} predictions but {len(references)} references")
    scorer = rouge.RougeScorer(["rouge1", "rougeL"], use_stemmer=True)
    scores = [scorer.score(ref, pred) for pred, ref in zip(predictions, references)]
    return {
        "rouge1_recall": np.array([s["rouge1"].recall for s in scores]),
        "rougeL_recall": np.array([s["rougeL"].recall for s in scores]),
    }


def truth_ratios(correct_avg_nll: Any, wrong_avg_nll: Any) -> np.ndarray:
    """TOFU truth ratio per sample: ``exp(-mean_j wrong_ij) / (exp(-mean_j correct_ij) + 1e-10)``.

    Inputs are length-normalized NLLs, shape (N,) or (N, P) (averaged over the P paraphrases/perturbations
    first, as OpenUnlearning's ``aggregate_to_1D``).
    """
    c = np.asarray(correct_avg_nll, dtype=np.float64)
    w = np.asarray(wrong_avg_nll, dtype=np.float64)
    c = c.reshape(c.shape[0], -1).mean(1) if c.ndim > 1 else c
    w = w.reshape(w.shape[0], -1).mean(1) if w.ndim > 1 else w
    if c.shape != w.shape:
        raise InvalidInputError(f"correct and wrong NLLs describe {c.shape[0]} vs {w.shape[0]} samples")
    return np.exp(-w) / (np.exp(-c) + 1e-10)


def aggregate_truth_ratio(ratios: Any, *, aggregator: str = "closer_to_1_better") -> float:
    """``closer_to_1_better``: ``mean(min(R, 1/R))`` (forget); ``true_better``: ``mean(max(0, 1 - R))``."""
    r = _arr(ratios, "truth ratios")
    if aggregator == "closer_to_1_better":
        return float(np.mean(np.minimum(r, 1.0 / (r + 1e-10))))
    if aggregator == "true_better":
        return float(np.mean(np.maximum(0.0, 1.0 - r)))
    raise InvalidInputError(f"aggregator must be 'closer_to_1_better' or 'true_better', got {aggregator!r}")


def forget_quality(forget_ratios: Any, reference_ratios: Any) -> float:
    """KS-test p-value between the unlearned and the retrained model's forget truth ratios (scipy ``ks_2samp``)."""
    return float(ks_2samp(_arr(forget_ratios, "truth ratios"), _arr(reference_ratios, "reference truth ratios")).pvalue)


def model_utility(values: Any) -> float:
    """Harmonic mean of retain-side scores (TOFU model utility); 0 when any score is 0."""
    v = _arr(values, "utility scores")
    if (v < 0).any():
        raise InvalidInputError("model utility takes non-negative scores")
    return 0.0 if (v == 0).any() else float(hmean(v))


def min_k_score(token_logp: Sequence[Any], *, k: float = 0.4) -> np.ndarray:
    """Min-K% Prob: ``-mean`` of the ``max(1, floor(k n))`` lowest token log-probs, per sample."""
    _check_k(k)
    out = []
    for lp in token_logp:
        lp = np.sort(np.asarray(lp, dtype=np.float64))
        out.append(-float(lp[: max(1, int(lp.size * k))].mean()))
    return np.array(out)


def min_k_plus_plus_score(token_logp: Sequence[Any], mu: Sequence[Any], sigma: Sequence[Any], *, k: float = 0.4
                          ) -> np.ndarray:
    """Min-K%++: ``-mean`` of the k% lowest ``(log p(x_t) - mu_t) / sigma_t`` (sigma^2 clamped at 1e-6)."""
    _check_k(k)
    z = [(np.asarray(lp, np.float64) - np.asarray(m, np.float64)) / np.asarray(s, np.float64)
         for lp, m, s in zip(token_logp, mu, sigma)]
    return min_k_score(z, k=k)


def zlib_score(avg_nll: Any, texts: Sequence[str]) -> np.ndarray:
    """ZLib attack: ``avg_nll / len(zlib.compress(text))`` per sample, ``text`` the scored answer text."""
    nll = _arr(avg_nll, "avg_nll")
    if len(texts) != nll.size:
        raise InvalidInputError(f"{nll.size} losses but {len(texts)} texts")
    return nll / np.array([len(zlib.compress(t.encode("utf-8"))) for t in texts], dtype=np.float64)


def mia_auc(forget_scores: Any, holdout_scores: Any) -> float:
    """ROC AUC with forget labelled 0 and holdout 1; scores grow for non-members (1.0: forget fully exposed)."""
    f, h = _arr(forget_scores, "forget scores"), _arr(holdout_scores, "holdout scores")
    y = np.concatenate([np.zeros(f.size), np.ones(h.size)])
    return float(roc_auc_score(y, np.concatenate([f, h])))


def privleak(auc: float, reference_auc: float) -> float:
    """MUSE PrivLeak from two :func:`mia_auc` values (forget = 0 convention): MUSE's AUC is ``1 - auc``, so
    ``((1 - auc) - (1 - auc_ref)) / (1 - auc_ref) * 100`` (OpenUnlearning ``privleak``, which adds 1e-10 to the
    denominator; erasus refuses ``auc_ref = 1`` instead). -100 when the forget set is fully exposed against a
    reference at chance (0.5), ~0 for a model as private as the retrained one."""
    for name, v in (("auc", auc), ("reference_auc", reference_auc)):
        if not (isinstance(v, (int, float, np.floating)) and 0.0 <= float(v) <= 1.0):
            raise InvalidInputError(f"{name} must be an AUC in [0, 1], got {v!r}")
    if reference_auc >= 1.0:
        raise InvalidInputError("the reference AUC must be below 1 (MUSE divides by 1 - AUC_ref)")
    muse, muse_ref = 1.0 - float(auc), 1.0 - float(reference_auc)
    return float((muse - muse_ref) / muse_ref * 100.0)


def _arr(x: Any, what: str) -> np.ndarray:
    a = np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x, dtype=np.float64).reshape(-1)
    if a.size == 0:
        raise InvalidInputError(f"{what} is empty")
    if not np.isfinite(a).all():
        raise NonFiniteError(f"{what} contains NaN or infinity")
    return a


def _check_k(k: float) -> None:
    if not 0.0 < k <= 1.0:
        raise InvalidInputError(f"k is a fraction of tokens in (0, 1], got {k}")


# --------------------------------------------------------------------------- running a model
@dataclasses.dataclass(frozen=True)
class TokenStats:
    """Per-sample answer-token statistics of one model on one data set (lists of 1-D float64 arrays).

    ``logp``: label log-probs; ``mu``/``sigma``: mean/std of ``log p`` under the next-token distribution;
    ``match``: teacher-forced argmax == label; ``texts``: the decoded answer (label) tokens, when a tokenizer
    is known.
    """

    logp: list[np.ndarray]
    mu: list[np.ndarray]
    sigma: list[np.ndarray]
    match: list[np.ndarray]
    texts: list[str] | None

    @property
    def nll_sum(self) -> np.ndarray:
        return np.array([-lp.sum() for lp in self.logp])

    @property
    def counts(self) -> np.ndarray:
        return np.array([lp.size for lp in self.logp], dtype=np.float64)

    @property
    def avg_nll(self) -> np.ndarray:
        return self.nll_sum / self.counts


def _device(model: torch.nn.Module, device: Any) -> torch.device:
    if device is not None:
        return torch.device(device)
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def lm_loader(data: Any, *, tokenizer: Any = None, batch_size: int = 16, max_length: int = 512,
              answer_key: str = "answer", answer_index: int | None = None) -> tuple[DataLoader, Any]:
    """A non-shuffling loader of causal-LM batches over ``data`` and the tokenizer it was built with."""
    from ..data.llm import LMDataset

    if isinstance(data, DataLoader):
        return data, tokenizer if tokenizer is not None else getattr(data.dataset, "tokenizer", None)
    if isinstance(data, LMDataset) and answer_key == "answer":
        return DataLoader(data, batch_size=batch_size, shuffle=False), tokenizer or data.tokenizer
    if isinstance(data, LMDataset):
        data = data.records
    if isinstance(data, Dataset) or not isinstance(data, Sequence) or isinstance(data, (str, bytes)):
        raise ErasusTypeError(
            f"LLM metrics take an LMDataset, a DataLoader of causal-LM batches or a list of records, got {type(data).__name__}"
        )
    if tokenizer is None:
        raise InvalidInputError("text records need tokenizer= to be scored")
    ds = LMDataset(data, tokenizer, max_length=max_length, answer_key=answer_key, answer_index=answer_index)
    return DataLoader(ds, batch_size=batch_size, shuffle=False), tokenizer


def token_stats(model: torch.nn.Module, data: Any, *, tokenizer: Any = None, batch_size: int = 16,
                max_length: int = 512, device: Any = None, answer_key: str = "answer",
                answer_index: int | None = None) -> TokenStats:
    """One no-grad pass of ``model`` over ``data`` collecting :class:`TokenStats` in the data's order."""
    loader, tok = lm_loader(data, tokenizer=tokenizer, batch_size=batch_size, max_length=max_length,
                            answer_key=answer_key, answer_index=answer_index)
    task, dev = CausalLMTask(), _device(model, device)
    logp_l: list[np.ndarray] = []
    mu_l: list[np.ndarray] = []
    sig_l: list[np.ndarray] = []
    match_l: list[np.ndarray] = []
    texts: list[str] = []
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            for batch in loader:
                if isinstance(batch, (tuple, list)):  # IndexedDataset-style (batch, indices)
                    batch = batch[0]
                batch = task.to_device(batch, dev)
                logits = task.outputs(model, batch)[:, :-1].double()
                labels = task.labels(batch)[:, 1:]
                mask = labels != IGNORE_INDEX
                logprobs = torch.log_softmax(logits, dim=-1)
                lp = logprobs.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
                probs = logprobs.exp()
                mu = (probs * logprobs).sum(-1)
                sigma = ((probs * logprobs.square()).sum(-1) - mu.square()).clamp(min=1e-6).sqrt()
                match = logits.argmax(-1) == labels
                for i in range(labels.shape[0]):
                    m = mask[i]
                    if not bool(m.any()):
                        raise InvalidInputError("a sample has no answer tokens (all labels are -100)")
                    logp_l.append(lp[i][m].cpu().numpy())
                    mu_l.append(mu[i][m].cpu().numpy())
                    sig_l.append(sigma[i][m].cpu().numpy())
                    match_l.append(match[i][m].cpu().numpy())
                if tok is not None:  # the scored (answer) text, as OpenUnlearning's zlib attack compresses
                    full = task.labels(batch)
                    texts.extend(tok.decode(row[row != IGNORE_INDEX].cpu(), skip_special_tokens=True) for row in full)
    finally:
        for mod, flag in flags:
            mod.training = flag
    if not logp_l:
        raise InvalidInputError("the data set is empty; metrics need at least one sample")
    return TokenStats(logp_l, mu_l, sig_l, match_l, texts if tok is not None else None)


def generate_answers(model: torch.nn.Module, tokenizer: Any, prompts: Sequence[str], *, max_new_tokens: int = 200,
                     batch_size: int = 16, chat_template: bool | None = None, device: Any = None) -> list[str]:
    """Greedy continuations of ``prompts`` (left-padded batches), decoded without special tokens."""
    from ..tasks.causal_lm import encode_prompt

    dev = _device(model, device)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    out: list[str] = []
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        for start in range(0, len(prompts), batch_size):
            chunk = prompts[start:start + batch_size]
            ids = [encode_prompt(tokenizer, p, chat_template=chat_template) for p in chunk]
            width = max(len(i) for i in ids)
            input_ids = torch.tensor([[pad] * (width - len(i)) + i for i in ids], device=dev)
            attention = torch.tensor([[0] * (width - len(i)) + [1] * len(i) for i in ids], device=dev)
            with torch.no_grad():
                gen = model.generate(input_ids=input_ids, attention_mask=attention, max_new_tokens=max_new_tokens,
                                     do_sample=False, pad_token_id=pad, eos_token_id=tokenizer.eos_token_id)
            out.extend(tokenizer.batch_decode(gen[:, width:].cpu(), skip_special_tokens=True))
    finally:
        for mod, flag in flags:
            mod.training = flag
    return [s.strip() for s in out]


def multiple_choice_predictions(model: torch.nn.Module, tokenizer: Any, records: Sequence[Mapping[str, Any]], *,
                                batch_size: int = 16, device: Any = None) -> np.ndarray:
    """Index of the highest-log-likelihood answer letter per WMDP-style record (lm-eval-harness zero-shot)."""
    from ..data.llm import LMDataset, format_multiple_choice

    flat: list[dict[str, str]] = []
    owners: list[int] = []
    for i, r in enumerate(records):
        prompt, conts = format_multiple_choice(r)
        flat.extend({"prompt": prompt, "answer": c} for c in conts)
        owners.extend([i] * len(conts))
    ds = LMDataset(flat, tokenizer, add_eos=False)
    ll = -token_stats(model, ds, batch_size=batch_size, device=device).nll_sum
    best = np.full(len(records), -np.inf)
    pred = np.zeros(len(records), dtype=np.int64)
    pos = np.zeros(len(records), dtype=np.int64)
    for owner, score in zip(owners, ll):
        if score > best[owner]:
            best[owner], pred[owner] = score, pos[owner]
        pos[owner] += 1
    return pred


def _grad_norm_scores(model: torch.nn.Module, data: Any, *, tokenizer: Any, p: float, max_length: int,
                      device: Any) -> np.ndarray:
    """Per sample: mean over parameter tensors of ``||d avg_nll / d theta||_p``; the model is left unchanged.

    OpenUnlearning's ``GradNormAttack`` takes these gradients in train mode (dropout on, a random score);
    erasus keeps eval mode so that the score is a function of the model and the sample."""
    loader, _ = lm_loader(data, tokenizer=tokenizer, batch_size=1, max_length=max_length)
    task, dev = CausalLMTask(), _device(model, device)
    params = [q for q in model.parameters() if q.requires_grad]
    scores = []
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        for batch in loader:
            if isinstance(batch, (tuple, list)):
                batch = batch[0]
            batch = task.to_device(batch, dev)
            for row in range(task.batch_size(batch)):
                one = {k: v[row:row + 1] for k, v in batch.items()}
                grads = torch.autograd.grad(task.per_sample_loss(model, one).sum(), params, allow_unused=True)
                norms = [g.detach().double().norm(p) for g in grads if g is not None]
                scores.append(float(torch.stack(norms).mean()))
    finally:
        for mod, flag in flags:
            mod.training = flag
    return np.array(scores)


# --------------------------------------------------------------------------- registered metrics
class _LMMetric(Metric):
    """Shared options: ``tokenizer`` (needed for text records and generation), ``max_length``."""

    def __init__(self, *, tokenizer: Any = None, max_length: int = 512, batch_size: int = 16, device: Any = None,
                 task: Any = None) -> None:
        super().__init__(task=task, batch_size=batch_size, device=device)
        self.tokenizer = tokenizer
        self.max_length = int(max_length)

    def _stats(self, model: torch.nn.Module, data: Any, **kw: Any) -> TokenStats:
        return token_stats(model, data, tokenizer=self.tokenizer, batch_size=self.batch_size,
                           max_length=self.max_length, device=self.device, **kw)

    def _records(self, data: Any) -> list[Mapping[str, Any]]:
        from ..data.llm import LMDataset

        records = data.records if isinstance(data, LMDataset) else data
        if not isinstance(records, Sequence) or not records or not all(isinstance(r, Mapping) for r in records):
            raise ErasusTypeError("this metric needs a non-empty list of record dicts (or an LMDataset built from them)")
        return list(records)

    def _tok(self, data: Any) -> Any:
        tok = self.tokenizer if self.tokenizer is not None else getattr(data, "tokenizer", None)
        if tok is None:
            raise InvalidInputError(f"{type(self).__name__} needs tokenizer=")
        return tok


@register_metric("answer_prob")
class AnswerProbabilityMetric(_LMMetric):
    """TOFU answer probability: mean over samples of ``exp(-avg answer NLL)``. Key ``answer_prob``."""

    inputs = ("forget",)
    group = "forgetting"

    def compute(self, model: torch.nn.Module, data: Any) -> dict[str, float]:
        return {"answer_prob": float(answer_probability(self._stats(model, data).avg_nll).mean())}


@register_metric("exact_memorization")
class ExactMemorizationMetric(_LMMetric):
    """Exact memorization (Tirumala et al., 2022): mean fraction of answer tokens predicted exactly. Key ``em``."""

    inputs = ("forget",)
    group = "forgetting"

    def compute(self, model: torch.nn.Module, data: Any) -> dict[str, float]:
        return {"em": float(exact_memorization(self._stats(model, data).match).mean())}


@register_metric("extraction_strength")
class ExtractionStrengthMetric(_LMMetric):
    """Extraction strength (Carlini et al., 2021): mean ``1 - k*/|a|``. Key ``es``."""

    inputs = ("forget",)
    group = "forgetting"

    def compute(self, model: torch.nn.Module, data: Any) -> dict[str, float]:
        return {"es": float(extraction_strength(self._stats(model, data).match).mean())}


@register_metric("perplexity")
class PerplexityMetric(_LMMetric):
    """Token-weighted perplexity over answer tokens ``exp(sum NLL / #tokens)``. Key ``perplexity``."""

    inputs = ("forget",)

    def compute(self, model: torch.nn.Module, data: Any) -> dict[str, float]:
        s = self._stats(model, data)
        return {"perplexity": perplexity(s.nll_sum, s.counts)}


@register_metric("rouge_l")
class RougeMetric(_LMMetric):
    """ROUGE-1/ROUGE-L recall of greedy answers (``max_new_tokens``, default 200) vs the reference answers."""

    inputs = ("forget",)
    group = "forgetting"

    def __init__(self, *, max_new_tokens: int = 200, chat_template: bool | None = None, **kw: Any) -> None:
        super().__init__(**kw)
        self.max_new_tokens = int(max_new_tokens)
        self.chat_template = chat_template

    def compute(self, model: torch.nn.Module, data: Any) -> dict[str, float]:
        records, tok = self._records(data), self._tok(data)
        gen = generate_answers(model, tok, [str(r.get("prompt", r.get("question", ""))) for r in records],
                               max_new_tokens=self.max_new_tokens, batch_size=self.batch_size,
                               chat_template=self.chat_template, device=self.device)
        scores = rouge_recall(gen, [str(r["answer"]) for r in records])
        return {k: float(v.mean()) for k, v in scores.items()}


def _truth_ratios(metric: _LMMetric, model: torch.nn.Module, records: list[Mapping[str, Any]], *,
                  correct_key: str = "paraphrased_answer") -> np.ndarray:
    if any(correct_key not in r or "perturbed_answer" not in r for r in records):
        raise InvalidInputError(f"truth ratio needs TOFU *_perturbed records with {correct_key}/perturbed_answer")
    wrong = _perturbed_nll(metric, model, records)
    return truth_ratios(metric._stats(model, records, answer_key=correct_key).avg_nll, wrong)


def _perturbed_nll(metric: _LMMetric, model: torch.nn.Module, records: list[Mapping[str, Any]]) -> np.ndarray:
    """(N, P) average NLLs of the P perturbed answers of every record."""
    if any("perturbed_answer" not in r for r in records):
        raise InvalidInputError("these scores need TOFU *_perturbed records with perturbed_answer")
    n_wrong = {len(r["perturbed_answer"]) for r in records}
    if len(n_wrong) != 1 or 0 in n_wrong:
        raise InvalidInputError(f"every record needs the same positive number of perturbed answers, got {n_wrong}")
    return np.stack([metric._stats(model, records, answer_key="perturbed_answer", answer_index=j).avg_nll
                     for j in range(n_wrong.pop())], axis=1)


@register_metric("truth_ratio")
class TruthRatioMetric(_LMMetric):
    """TOFU truth ratio on ``*_perturbed`` records; ``aggregator`` ``closer_to_1_better`` (forget) or
    ``true_better`` (retain). ``correct_key`` is the answer the perturbations are compared with:
    ``"paraphrased_answer"`` (forget, retain) or ``"answer"`` (real authors, world facts: TOFU's
    ``base_answer_key`` in ``config/eval_everything.yaml``). Key ``truth_ratio``."""

    inputs = ("forget",)
    group = "forgetting"

    def __init__(self, *, aggregator: str = "closer_to_1_better", correct_key: str = "paraphrased_answer",
                 **kw: Any) -> None:
        super().__init__(**kw)
        aggregate_truth_ratio([1.0], aggregator=aggregator)
        if correct_key not in ("paraphrased_answer", "answer"):
            raise InvalidInputError(f"correct_key must be 'paraphrased_answer' or 'answer', got {correct_key!r}")
        self.aggregator = aggregator
        self.correct_key = correct_key

    def compute(self, model: torch.nn.Module, data: Any) -> dict[str, float]:
        ratios = _truth_ratios(self, model, self._records(data), correct_key=self.correct_key)
        return {"truth_ratio": aggregate_truth_ratio(ratios, aggregator=self.aggregator)}


@register_metric("forget_quality")
class ForgetQualityMetric(_LMMetric):
    """TOFU forget quality: KS p-value of forget truth ratios vs those of ``reference_model`` (retrained)."""

    inputs = ("forget",)
    group = "forgetting"
    needs_reference = True

    def compute(self, model: torch.nn.Module, data: Any, *, reference_model: torch.nn.Module | None = None
                ) -> dict[str, float]:
        if reference_model is None:
            raise InvalidInputError("forget_quality compares with a retained-only model: pass reference_model=")
        records = self._records(data)
        return {"forget_quality": forget_quality(_truth_ratios(self, model, records),
                                                 _truth_ratios(self, reference_model, records))}


@register_metric("model_utility")
class ModelUtilityMetric(_LMMetric):
    """TOFU model utility (Maini et al., 2024): the harmonic mean of nine scores, as OpenUnlearning's
    ``hm_aggregate`` over ``configs/eval/tofu_metrics/model_utility.yaml`` and TOFU's ``aggregate_eval_stat.py``:

    * ``retain`` (``retain_perturbed`` records): answer probability ``mean exp(-avg_nll(answer))``, ROUGE-L
      recall of greedy answers, truth ratio ``mean max(0, 1 - R)`` with the paraphrased answer as the correct one;
    * ``real_authors`` and ``world_facts`` (``*_perturbed`` records, no paraphrase): the answer probability
      normalized over the options (:func:`answer_probability_with_options`), ROUGE-L recall, and the truth
      ratio with the answer itself as the correct one.

    Keys ``model_utility`` and the components under OpenUnlearning's names (``retain_Q_A_Prob``,
    ``ra_Q_A_Prob_normalised``, ``wf_Truth_Ratio``, ...). Without ``real_authors``/``world_facts`` the mean is
    over the components computed, which is not TOFU's number: give all three sets to compare with the paper,
    to :meth:`compute` or as the options ``real_authors=``/``world_facts=`` (for :class:`MetricSuite`).
    """

    inputs = ("retain",)

    def __init__(self, *, max_new_tokens: int = 200, real_authors: Any = None, world_facts: Any = None,
                 **kw: Any) -> None:
        super().__init__(**kw)
        self.max_new_tokens = int(max_new_tokens)
        # as options too, so that MetricSuite (which passes the retain split) reports all nine components
        self.real_authors, self.world_facts = real_authors, world_facts

    def compute(self, model: torch.nn.Module, retain: Any, real_authors: Any = None, world_facts: Any = None
                ) -> dict[str, float]:
        opts = dict(tokenizer=self.tokenizer, max_length=self.max_length, batch_size=self.batch_size, device=self.device)
        sets = [("retain", retain), ("ra", self.real_authors if real_authors is None else real_authors),
                ("wf", self.world_facts if world_facts is None else world_facts)]
        checked = [(name, self._records(data), data) for name, data in sets if data is not None]
        for name, records, _ in checked:  # validate every set before the first (slow) pass
            need = ("answer", "perturbed_answer") + (("paraphrased_answer",) if name == "retain" else ())
            missing = sorted({k for r in records for k in need if k not in r})
            if missing:
                raise InvalidInputError(f"model_utility: the {name} records lack {missing} (TOFU *_perturbed splits)")
            n_wrong = {len(r["perturbed_answer"]) for r in records}
            if len(n_wrong) != 1 or 0 in n_wrong:
                raise InvalidInputError(f"model_utility: every {name} record needs the same positive number of "
                                        f"perturbed answers, got {sorted(n_wrong)}")
        out: dict[str, float] = {}
        rouge = RougeMetric(max_new_tokens=self.max_new_tokens, **opts)
        for name, records, data in checked:
            wrong = _perturbed_nll(self, model, records)
            correct = self._stats(model, records).avg_nll
            if name == "retain":
                out["retain_Q_A_Prob"] = float(answer_probability(correct).mean())
                tr = truth_ratios(self._stats(model, records, answer_key="paraphrased_answer").avg_nll, wrong)
            else:
                out[f"{name}_Q_A_Prob_normalised"] = float(answer_probability_with_options(correct, wrong).mean())
                tr = truth_ratios(correct, wrong)
            out[f"{name}_Q_A_ROUGE"] = rouge.compute(model, data)["rougeL_recall"]
            out[f"{name}_Truth_Ratio"] = aggregate_truth_ratio(tr, aggregator="true_better")
        return {"model_utility": model_utility(list(out.values())), **out}


@register_metric("mc_accuracy")
class MultipleChoiceAccuracyMetric(_LMMetric):
    """WMDP/MMLU-style zero-shot multiple-choice accuracy (letter with the highest log-likelihood). Key ``mc_accuracy``."""

    inputs = ("forget",)

    def compute(self, model: torch.nn.Module, data: Any) -> dict[str, float]:
        records = self._records(data)
        pred = multiple_choice_predictions(model, self._tok(data), records, batch_size=self.batch_size,
                                           device=self.device)
        return {"mc_accuracy": float(np.mean(pred == np.array([int(r["answer"]) for r in records])))}


_ATTACKS = ("loss", "zlib", "min_k", "min_k_plus_plus", "reference", "gradnorm")


def _attack_scores(metric: LMMembershipMetric, model: torch.nn.Module, data: Any,
                   reference_model: torch.nn.Module | None) -> np.ndarray:
    if metric.attack == "gradnorm":
        return _grad_norm_scores(model, data, tokenizer=metric.tokenizer, p=metric.p, max_length=metric.max_length,
                                 device=metric.device)
    s = metric._stats(model, data)
    if metric.attack == "loss":
        return s.avg_nll
    if metric.attack == "zlib":
        if s.texts is None:
            raise InvalidInputError("the zlib attack decodes the inputs: pass tokenizer= or an LMDataset")
        return zlib_score(s.avg_nll, s.texts)
    if metric.attack == "min_k":
        return min_k_score(s.logp, k=metric.k)
    if metric.attack == "min_k_plus_plus":
        return min_k_plus_plus_score(s.logp, s.mu, s.sigma, k=metric.k)
    if reference_model is None:
        raise InvalidInputError("the reference attack needs reference_model= (e.g. the model before fine-tuning)")
    return s.avg_nll - metric._stats(reference_model, data).avg_nll


class LMMembershipMetric(_LMMetric):
    """A membership attack on forget (members) vs holdout (non-members) data as ROC AUC (OpenUnlearning
    convention, see :func:`mia_auc`): key ``mia_<attack>_auc``. ``k`` is Min-K%'s fraction (0.4), ``p`` the
    gradient norm's order."""

    inputs = ("forget", "test")
    group = "privacy"
    attack = "loss"

    def __init__(self, *, k: float = 0.4, p: float = 2.0, **kw: Any) -> None:
        super().__init__(**kw)
        _check_k(k)
        self.k, self.p = float(k), float(p)

    def compute(self, model: torch.nn.Module, forget: Any, holdout: Any, *,
                reference_model: torch.nn.Module | None = None) -> dict[str, float]:
        f = _attack_scores(self, model, forget, reference_model)
        h = _attack_scores(self, model, holdout, reference_model)
        return {f"mia_{self.attack}_auc": mia_auc(f, h)}


def _attack_class(attack: str, doc: str) -> type[LMMembershipMetric]:
    cls = type(f"MIA_{attack}", (LMMembershipMetric,), {"attack": attack, "__doc__": doc})
    return register_metric("mia_lm_loss" if attack == "loss" else f"mia_{attack}")(cls)


for _attack, _doc in {
    "loss": "LOSS attack on a causal LM (Yeom et al., 2018): score = average answer NLL; AUC.",
    "zlib": "ZLib attack (Carlini et al., 2021): score = avg NLL / zlib-compressed length; AUC.",
    "min_k": "Min-K% Prob (Shi et al., 2024): score = -mean of the k% lowest token log-probs; AUC.",
    "min_k_plus_plus": "Min-K%++ (Zhang et al., 2024): calibrated token scores (log p - mu) / sigma; AUC.",
    "reference": "Reference attack (Carlini et al., 2021): score = NLL_target - NLL_reference_model; AUC.",
    "gradnorm": "Gradient-norm attack: score = mean over parameter tensors of ||grad avg NLL||_p; AUC.",
}.items():
    _attack_class(_attack, _doc)


@register_metric("privleak")
class PrivLeakMetric(_LMMetric):
    """MUSE PrivLeak of a Min-K% attack (``attack=``): :func:`privleak`, the relative difference of MUSE's
    ``1 - AUC`` to the reference's, with the reference AUC from ``reference_model`` (retrained) or
    ``reference_auc`` (0.5 when neither is given, OpenUnlearning's ``ref_value``). ~-100: the forget set is
    still exposed; ~0: as private as the retrained model. Keys ``privleak`` and the attack's AUC."""

    inputs = ("forget", "test")
    group = "privacy"

    def __init__(self, *, attack: str = "min_k", k: float = 0.4, reference_auc: float = 0.5, **kw: Any) -> None:
        super().__init__(**kw)
        if attack not in _ATTACKS or attack == "reference":
            raise InvalidInputError(f"attack must be one of {[a for a in _ATTACKS if a != 'reference']}, got {attack!r}")
        self.mia = type("_MIA", (LMMembershipMetric,), {"attack": attack})(k=k, **kw)
        self.reference_auc = float(reference_auc)

    def compute(self, model: torch.nn.Module, forget: Any, holdout: Any, *,
                reference_model: torch.nn.Module | None = None) -> dict[str, float]:
        key = f"mia_{self.mia.attack}_auc"
        auc = self.mia.compute(model, forget, holdout)[key]
        ref = self.reference_auc if reference_model is None else self.mia.compute(reference_model, forget, holdout)[key]
        return {"privleak": privleak(auc, ref), key: auc}
