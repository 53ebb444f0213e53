"""Encoder-decoder adapter (Whisper, Speech2Text, T5, BART, any ``*ForConditionalGeneration`` with an encoder).

A batch is a dict with the encoder's input (``input_features`` (B, mel_bins, frames) for Whisper,
``input_ids`` + ``attention_mask`` for text models, ``pixel_values`` for vision encoder-decoders) and
``labels`` (B, T): the tokens the decoder must produce, ``-100`` on padding. As in transformers, the model
builds its decoder inputs by shifting ``labels`` right behind ``decoder_start_token_id``, so logit ``t``
predicts ``labels[:, t]`` (no extra shift here, unlike a causal LM). The per-sample loss is the mean token
cross-entropy over that sample's non-padding tokens:

    ``loss_i = -(1/|T_i|) sum_{t in T_i} log p(y_t | y_<t, x_i)``

which is what ``model(input_features=x_i, labels=y_i).loss`` returns for one sample alone.
:class:`Seq2SeqCollator` pads ``labels`` of different lengths with ``-100``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import default_collate

from ..errors import ErasusTypeError, InvalidInputError
from .base import Batch, Task, register_task
from .classification import logits_of

__all__ = ["IGNORE_INDEX", "ENCODER_KEYS", "Seq2SeqCollator", "Seq2SeqTask", "is_seq2seq_sample", "token_cross_entropy"]

IGNORE_INDEX = -100
#: encoder inputs a batch may carry; every one present is passed to the model
ENCODER_KEYS = ("input_features", "input_values", "input_ids", "pixel_values", "attention_mask")
_DECODER_KEYS = ("decoder_input_ids", "decoder_attention_mask")
_PAD_VALUES = {"labels": IGNORE_INDEX, "decoder_input_ids": 0, "decoder_attention_mask": 0}


def token_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-sample mean token cross-entropy of (B, T, V) logits against (B, T) labels, ``-100`` ignored, (B,)."""
    if logits.ndim != 3 or labels.ndim != 2 or logits.shape[:2] != labels.shape:
        raise InvalidInputError(
            f"token cross-entropy needs logits (B, T, V) and labels (B, T); got {tuple(logits.shape)} and {tuple(labels.shape)}"
        )
    nll = F.cross_entropy(logits.float().transpose(1, 2), labels, ignore_index=IGNORE_INDEX, reduction="none")
    count = (labels != IGNORE_INDEX).sum(-1)
    # inside torch.func transforms (per-sample gradients) a value check is not allowed; the same samples go
    # through a plain forward first
    if not torch._C._functorch.is_functorch_wrapped_tensor(count) and bool((count == 0).any()):
        raise InvalidInputError("a sample in this batch has no target tokens (all its labels are -100)")
    return nll.sum(-1) / count


class Seq2SeqCollator:
    """Collate ``{"input_features": (mel_bins, frames), "labels": (T_i,), ...}`` items into a batch.

    ``labels`` are right-padded with ``-100`` (ignored by the loss), ``decoder_input_ids`` /
    ``decoder_attention_mask`` with 0; every other entry is stacked by torch's ``default_collate``, so
    encoder inputs must already share their shape (Whisper's feature extractor pads every clip to the same
    number of frames). This is transformers' ``DataCollatorSpeechSeq2SeqWithPadding`` for labels already
    tokenized.
    """

    def __call__(self, items: Sequence[Any]) -> dict[str, Any]:
        if not items:
            raise InvalidInputError("cannot collate an empty list of samples")
        if not all(isinstance(it, Mapping) for it in items):
            raise ErasusTypeError(f"seq2seq samples are dicts, got {type(items[0]).__name__}")
        keys = list(items[0])
        if any(list(it) != keys for it in items):
            raise InvalidInputError(f"seq2seq samples must share their keys; the first has {keys}")
        out: dict[str, Any] = {}
        for key in keys:
            values = [it[key] for it in items]
            if key in _PAD_VALUES:
                out[key] = self._pad(key, values)
                continue
            shapes = {tuple(torch.as_tensor(v).shape) for v in values}
            if len(shapes) > 1:
                raise InvalidInputError(
                    f"the samples' {key!r} have different shapes {sorted(shapes)}; encoder inputs must share their "
                    "shape (pad audio to the model's frame count with its feature extractor)"
                )
            out[key] = default_collate(values)
        return out

    @staticmethod
    def _pad(key: str, values: Sequence[Any]) -> torch.Tensor:
        seqs = [torch.as_tensor(v) for v in values]
        bad = [tuple(s.shape) for s in seqs if s.ndim != 1]
        if bad:
            raise InvalidInputError(f"each sample's {key!r} must be a 1-D token sequence, got shapes {bad[:3]}")
        if any(s.dtype.is_floating_point or s.dtype == torch.bool for s in seqs):
            raise ErasusTypeError(f"{key!r} must hold integer token ids")
        length = max(int(s.shape[0]) for s in seqs)
        out = torch.full((len(seqs), length), _PAD_VALUES[key], dtype=torch.long)
        for i, s in enumerate(seqs):
            out[i, : s.shape[0]] = s.long()
        return out


def is_seq2seq_sample(sample: Any) -> bool:
    """A dict item with an encoder input that is not token ids and a 1-D ``labels`` token sequence."""
    if not isinstance(sample, Mapping) or "labels" not in sample:
        return False
    if not any(k in sample for k in ("input_features", "decoder_input_ids")):
        return False
    return torch.as_tensor(sample["labels"]).ndim == 1


@register_task("seq2seq")
class Seq2SeqTask(Task):
    """Encoder-decoder models: ``loss_i = mean_{t: y_it != -100} CE(logits_it, y_it)`` (see the module docstring).

    Works for ``WhisperForConditionalGeneration`` (batches of ``input_features`` + ``labels``), ``T5`` / ``BART``
    (``input_ids`` + ``attention_mask`` + ``labels``) and any module whose ``forward`` takes those keywords
    and returns ``logits`` (B, T, V), such as :class:`erasus.models.WhisperWrapper`.
    """

    name = "seq2seq"

    def _check(self, batch: Batch) -> Mapping[str, Any]:
        if not isinstance(batch, Mapping):
            raise ErasusTypeError(
                f"a seq2seq batch is a dict with input_features (or input_ids) and labels, got {type(batch).__name__}"
            )
        if not any(k in batch for k in ENCODER_KEYS if k != "attention_mask"):
            raise InvalidInputError(f"a seq2seq batch needs one of {ENCODER_KEYS[:-1]}, got keys {list(batch)}")
        if "labels" not in batch and "decoder_input_ids" not in batch:
            raise InvalidInputError("a seq2seq batch needs labels (the target tokens, -100 on padding)")
        return batch

    def _check_length(self, model: torch.nn.Module, labels: torch.Tensor) -> None:
        limit = getattr(getattr(model, "config", None), "max_target_positions", None)
        if isinstance(limit, int) and labels.shape[-1] > limit:
            raise InvalidInputError(
                f"labels have {labels.shape[-1]} tokens but the decoder takes at most {limit} "
                "(config.max_target_positions); shorten the transcripts"
            )

    def features_input(self, batch: Batch) -> dict[str, Any]:
        b = self._check(batch)
        return {k: b[k] for k in (*ENCODER_KEYS, *_DECODER_KEYS) if b.get(k) is not None}

    def outputs(self, model: torch.nn.Module, batch: Batch) -> torch.Tensor:
        """Decoder logits (B, T, V), teacher-forced on the shifted labels."""
        b = self._check(batch)
        inputs = self.features_input(b)
        if "decoder_input_ids" not in inputs:
            labels = torch.as_tensor(b["labels"])
            self._check_length(model, labels)
            inputs["labels"] = labels
        logits = logits_of(model(**inputs))
        if logits.ndim != 3:
            raise InvalidInputError(f"an encoder-decoder must return logits of shape (B, T, V), got {tuple(logits.shape)}")
        return logits

    def per_sample_loss(self, model: torch.nn.Module, batch: Batch) -> torch.Tensor:
        logits = self.outputs(model, batch)
        return token_cross_entropy(logits, self.labels(batch).to(logits.device))

    def log_likelihood(self, model: torch.nn.Module, batch: Batch, *, normalize: bool = False) -> torch.Tensor:
        """Per-sample transcript log-likelihood ``sum_t log p(y_t | y_<t, x)`` (or its mean over tokens), (B,)."""
        logits = self.outputs(model, batch)
        labels = self.labels(batch).to(logits.device)
        mask = labels != IGNORE_INDEX
        logp = torch.log_softmax(logits.float(), -1).gather(-1, labels.masked_fill(~mask, 0).unsqueeze(-1)).squeeze(-1)
        total = (logp * mask).sum(-1)
        return total / mask.sum(-1).clamp(min=1) if normalize else total

    def labels(self, batch: Batch) -> torch.Tensor:
        """The (B, T) target tokens (``-100`` on padding)."""
        b = self._check(batch)
        if b.get("labels") is None:
            raise InvalidInputError("this seq2seq batch has no labels")
        y = torch.as_tensor(b["labels"])
        if y.ndim != 2 or y.dtype.is_floating_point or y.dtype == torch.bool:
            raise ErasusTypeError(f"seq2seq labels are integer token ids (B, T), got {y.dtype} {tuple(y.shape)}")
        return y.long()

    def with_labels(self, batch: Batch, labels: torch.Tensor) -> Batch:
        out = dict(self._check(batch))
        out["labels"] = labels
        out.pop("decoder_input_ids", None)  # decoder inputs follow the new labels
        return out

    def with_inputs(self, batch: Batch, inputs: Any) -> Batch:
        out = dict(self._check(batch))
        out[next(k for k in ENCODER_KEYS if k in out)] = inputs
        return out

    def num_classes(self, model: torch.nn.Module, batch: Batch) -> int | None:
        """The vocabulary size: random-label methods draw random target tokens from it."""
        n = getattr(getattr(model, "config", None), "vocab_size", None)
        if isinstance(n, int) and n > 0:
            return n
        with torch.no_grad():
            return int(self.outputs(model, batch).shape[-1])

    def embeddings(self, model: torch.nn.Module, batch: Batch) -> torch.Tensor | None:
        """Mean-pooled last encoder state (B, d) for selection (k-center, CRAIG on embeddings)."""
        get_encoder = getattr(model, "get_encoder", None)
        if get_encoder is None:
            return None
        b = self._check(batch)
        enc_inputs = {k: b[k] for k in ENCODER_KEYS if b.get(k) is not None}
        hidden = get_encoder()(**enc_inputs).last_hidden_state
        mask = b.get("attention_mask")
        if mask is not None and mask.shape == hidden.shape[:2]:
            m = mask.to(hidden.dtype).unsqueeze(-1)
            return (hidden * m).sum(1) / m.sum(1).clamp(min=1)
        return hidden.mean(1)
