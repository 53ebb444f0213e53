"""Speech metrics: word / character error rate (``jiwer``), per-speaker WER, transcript accuracy and
speaker-embedding similarity.

``WER = (S + D + I) / N`` over the reference words (Levenshtein alignment of hypothesis to reference, summed
over utterances then divided by the total reference length, as ``jiwer.wer`` does); CER is the same over
characters. The registered ``"wer"`` / ``"cer"`` metrics transcribe each split's ``{"input_features", "labels"}``
items greedily with the model (``model.generate``) and decode the references from the labels with a
tokenizer (a :class:`erasus.models.WhisperWrapper` carries both). The membership attacks on per-utterance
loss are the generic ones (``get_metric("mia_loss")`` works on these items through the seq2seq task).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from ..errors import ErasusTypeError, InvalidInputError, require
from ..registry import register_metric
from .base import SplitMetric

__all__ = ["wer", "cer", "per_speaker_wer", "transcript_accuracy", "speaker_similarity", "transcribe_items",
           "speaker_embeddings", "WERMetric", "CERMetric", "SpeakerSimilarityMetric"]


def _check_pairs(references: Sequence[str], hypotheses: Sequence[str], *, what: str) -> tuple[list[str], list[str]]:
    if isinstance(references, str) or isinstance(hypotheses, str):
        raise ErasusTypeError(f"{what} takes lists of transcripts, not a single string (wrap it in a list)")
    refs, hyps = list(references), list(hypotheses)
    if len(refs) != len(hyps) or not refs:
        raise InvalidInputError(f"{what} needs as many hypotheses as references (> 0), got {len(refs)} and {len(hyps)}")
    if not all(isinstance(t, str) for t in refs + hyps):
        raise ErasusTypeError(f"{what}: every transcript must be a str")
    if any(not r.strip() for r in refs):
        raise InvalidInputError(f"{what}: a reference transcript is empty; the error rate of an empty reference is undefined")
    return refs, hyps


def wer(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Corpus word error rate ``(S + D + I) / N`` (``jiwer.wer``); an empty hypothesis counts all deletions."""
    jiwer = require("jiwer", "audio", purpose="word error rate")
    refs, hyps = _check_pairs(references, hypotheses, what="wer")
    return float(jiwer.wer(refs, hyps))


def cer(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Corpus character error rate (``jiwer.cer``)."""
    jiwer = require("jiwer", "audio", purpose="character error rate")
    refs, hyps = _check_pairs(references, hypotheses, what="cer")
    return float(jiwer.cer(refs, hyps))


def per_speaker_wer(references: Sequence[str], hypotheses: Sequence[str], speakers: Sequence[Any]) -> dict[str, float]:
    """``{speaker: WER of that speaker's utterances}`` (UnSLU-BENCH's unit of forgetting is the speaker)."""
    refs, hyps = _check_pairs(references, hypotheses, what="per_speaker_wer")
    spk = [str(s) for s in speakers]
    if len(spk) != len(refs):
        raise InvalidInputError(f"per_speaker_wer: {len(spk)} speaker ids for {len(refs)} utterances")
    out = {}
    for s in sorted(set(spk)):
        idx = [i for i, x in enumerate(spk) if x == s]
        out[s] = wer([refs[i] for i in idx], [hyps[i] for i in idx])
    return out


def transcript_accuracy(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Fraction of utterances transcribed exactly (after lower-casing and collapsing whitespace)."""
    refs, hyps = _check_pairs(references, hypotheses, what="transcript_accuracy")
    norm = lambda t: " ".join(t.lower().split())  # noqa: E731
    return float(np.mean([norm(r) == norm(h) for r, h in zip(refs, hyps)]))


def speaker_similarity(embeddings: Any, reference: Any) -> float:
    """Mean cosine similarity of utterance speaker embeddings (N, d) to the centroid of ``reference`` (M, d)
    (e.g. an x-vector / ECAPA encoder's outputs on the forgotten speaker's enrolment clips)."""
    e = torch.as_tensor(np.asarray(embeddings), dtype=torch.float64)
    r = torch.as_tensor(np.asarray(reference), dtype=torch.float64)
    if e.ndim != 2 or r.ndim != 2 or e.shape[1] != r.shape[1] or not len(e) or not len(r):
        raise InvalidInputError(f"speaker_similarity needs (N, d) and (M, d) embeddings, got {tuple(e.shape)} and {tuple(r.shape)}")
    if not (torch.isfinite(e).all() and torch.isfinite(r).all()):
        raise InvalidInputError("speaker embeddings hold NaN or infinite values")
    centroid = torch.nn.functional.normalize(r, dim=1).mean(0)
    return float(torch.nn.functional.cosine_similarity(e, centroid[None], dim=1).mean())


def _tokenizer_of(model: Any, tokenizer: Any) -> Any:
    tok = tokenizer if tokenizer is not None else getattr(getattr(model, "processor", None), "tokenizer", None)
    if tok is None:
        raise InvalidInputError("WER needs a tokenizer to decode transcripts: pass tokenizer= or a WhisperWrapper")
    return tok


@torch.no_grad()
def transcribe_items(model: Any, items: Sequence[dict[str, Any]], *, tokenizer: Any = None, batch_size: int = 64,
                     max_new_tokens: int | None = None) -> tuple[list[str], list[str]]:
    """``(references, hypotheses)`` of ``{"input_features", "labels"}`` items: labels decoded, features greedily
    transcribed by ``model.generate``."""
    tok = _tokenizer_of(model, tokenizer)
    items = list(items)
    if not items or not all(isinstance(it, dict) and "input_features" in it and "labels" in it for it in items):
        raise InvalidInputError("WER takes a non-empty list of {'input_features', 'labels'} items")
    gen = model if hasattr(model, "generate") else getattr(model, "model", model)  # a WhisperWrapper's model
    if not hasattr(gen, "generate"):
        raise ErasusTypeError(f"{type(model).__name__} cannot generate transcripts (no .generate)")
    device = next(gen.parameters()).device
    limit = max_new_tokens or max(int(getattr(gen.config, "max_target_positions", 32)) - 2, 1)
    refs, hyps = [], []
    was = gen.training
    gen.eval()
    try:
        for i in range(0, len(items), batch_size):
            chunk = items[i:i + batch_size]
            feats = torch.stack([torch.as_tensor(it["input_features"]) for it in chunk]).to(device)
            ids = gen.generate(input_features=feats, max_new_tokens=limit)
            hyps += [t.strip() for t in tok.batch_decode(ids, skip_special_tokens=True)]
            labels = [[int(t) for t in torch.as_tensor(it["labels"]).tolist() if int(t) >= 0] for it in chunk]
            refs += [t.strip() for t in tok.batch_decode(labels, skip_special_tokens=True)]
    finally:
        gen.train(was)
    return refs, hyps


class _ErrorRateMetric(SplitMetric):
    group = "utility"
    _fn: Callable[[Sequence[str], Sequence[str]], float]

    def __init__(self, *, tokenizer: Any = None, max_new_tokens: int | None = None, **options: Any) -> None:
        super().__init__(**options)
        self.tokenizer, self.max_new_tokens = tokenizer, max_new_tokens

    def _split_value(self, model: Any, data: Any, **kwargs: Any) -> float:
        refs, hyps = transcribe_items(model, data, tokenizer=self.tokenizer, batch_size=self.batch_size,
                                      max_new_tokens=self.max_new_tokens)
        return type(self)._fn(refs, hyps)


@register_metric("wer")
class WERMetric(_ErrorRateMetric):
    """Word error rate of greedy transcripts on each split (keys ``{split}_wer``); higher on the forget split
    after unlearning, unchanged on retain / test."""

    _fn = staticmethod(wer)
    key = "wer"


@register_metric("cer")
class CERMetric(_ErrorRateMetric):
    """Character error rate of greedy transcripts on each split (keys ``{split}_cer``)."""

    _fn = staticmethod(cer)
    key = "cer"


SpeakerEncoder = Callable[[torch.nn.Module, Any], Any]


@torch.no_grad()
def speaker_embeddings(model: torch.nn.Module, data: Any, *, encoder: SpeakerEncoder | None = None, task: Any = None,
                       batch_size: int = 64, device: Any = None) -> torch.Tensor:
    """(N, d) float64 speaker embeddings of ``data`` as ``model`` hears it, in the data's order.

    ``encoder(model, batch) -> (B, d)`` is called on each collated batch (on the model's device, model in eval
    mode): e.g. an ECAPA / x-vector encoder applied to the speech a TTS model generates for the batch, or a probe on
    the model's states. ``encoder=None`` uses the model's own embedding through its task adapter (Whisper: the
    mean-pooled last encoder state, :meth:`erasus.tasks.seq2seq.Seq2SeqTask.embeddings`), which asks how much
    speaker identity the model itself still encodes.
    """
    from ..features import embeddings
    from .outputs import evaluating, model_device, ordered_loader, resolve_task

    if encoder is None:
        return embeddings(model, data, task=task, batch_size=batch_size, device=device, progress=False).double()
    if not callable(encoder):
        raise ErasusTypeError(f"encoder must be a callable encoder(model, batch) -> (B, d), got {type(encoder).__name__}")
    task = resolve_task(model, data, task)
    dev = model_device(model, device)
    rows = []
    with evaluating(model):
        for batch in ordered_loader(data, batch_size=batch_size):
            batch = task.to_device(batch, dev)
            e = torch.as_tensor(np.asarray(torch.as_tensor(encoder(model, batch)).detach().cpu()), dtype=torch.float64)
            if e.ndim != 2 or e.shape[0] != task.batch_size(batch):
                raise InvalidInputError(f"encoder returned shape {tuple(e.shape)} for a batch of "
                                        f"{task.batch_size(batch)} utterances; expected (batch, d)")
            rows.append(e)
    return torch.cat(rows)


@register_metric("speaker_similarity")
class SpeakerSimilarityMetric(SplitMetric):
    """Mean cosine similarity of each split's speaker embeddings to the centroid of the ``reference=`` clips'
    (the forgotten speaker's enrolment utterances): ``mean_i cos(e_i, mean_j e_j^ref / ||e_j^ref||)``; keys
    ``{split}_speaker_similarity``.

    Speaker similarity is how voice-unlearning work scores a forgotten speaker (e.g. Kim et al., "Do Not Mimic My
    Voice: Teacher-Guided Unlearning for Zero-Shot Text-to-Speech", 2024, cosine of speaker-verification
    embeddings). The embeddings come from ``encoder(model, batch)`` when one is supplied, else from the model's
    own encoder (see :func:`speaker_embeddings`); both the splits and the reference are embedded by the model
    under evaluation. Lower on the forgotten speaker's held-out clips after unlearning, towards the value of
    speakers the model never heard.
    """

    group = "forgetting"
    key = "speaker_similarity"

    def __init__(self, *, encoder: SpeakerEncoder | None = None, **options: Any) -> None:
        super().__init__(**options)
        if encoder is not None and not callable(encoder):
            raise ErasusTypeError(f"encoder must be a callable encoder(model, batch) -> (B, d), got {type(encoder).__name__}")
        self.encoder = encoder

    def _embed(self, model: Any, data: Any) -> torch.Tensor:
        return speaker_embeddings(model, data, encoder=self.encoder, task=self.task, batch_size=self.batch_size,
                                  device=self.device)

    def compute(self, model: torch.nn.Module, forget: Any = None, retain: Any = None, test: Any = None, *,
                reference: Any = None) -> dict[str, float]:
        if reference is None:
            raise InvalidInputError("speaker_similarity compares with a speaker's clips: pass reference= "
                                    "(e.g. the forgotten speaker's enrolment utterances)")
        if all(v is None for v in (forget, retain, test)):
            raise InvalidInputError(f"{self.key} needs at least one of forget=, retain=, test=")
        return super().compute(model, forget, retain, test, reference=self._embed(model, reference))

    def _split_value(self, model: Any, data: Any, *, reference: torch.Tensor) -> float:
        return speaker_similarity(self._embed(model, data), reference)
