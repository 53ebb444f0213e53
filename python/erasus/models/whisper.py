"""Whisper: :class:`WhisperWrapper` (feature extractor + tokenizer + model, ``transcribe``, encoder / decoder
parameter groups) and offline builders for small Whispers trained from a ``WhisperConfig``.

A wrapper is an ``nn.Module`` whose ``forward`` is the model's, so :class:`erasus.tasks.seq2seq.Seq2SeqTask`
and every general strategy take it as they take ``WhisperForConditionalGeneration``. ``train_only("decoder")``
freezes the other group, so a strategy unlearns in the decoder alone (STYLE 20: strategies ask for groups by
name, they never hard-code module paths).

:func:`char_whisper_processor` makes a character-level ``WhisperTokenizer`` (Whisper's special tokens, a BPE
with no merges) and a ``WhisperFeatureExtractor`` for short clips without any download; :func:`small_whisper`
builds a model whose config and generation config match it (``max_source_positions = frames / 2``).
"""

from __future__ import annotations

import json
import string
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import ErasusTypeError, InvalidInputError, require

__all__ = ["WhisperWrapper", "char_whisper_processor", "small_whisper", "whisper_parameter_groups"]

WHISPER_SPECIALS = ("<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|transcribe|>", "<|notimestamps|>")


def char_whisper_processor(folder: str | Path, *, num_mel_bins: int = 80, chunk_length: int = 1,
                           sampling_rate: int = 16000, alphabet: str = string.ascii_lowercase + "'") -> Any:
    """A ``WhisperProcessor`` for models trained from scratch: one token per character of ``alphabet`` (plus
    the space, BPE's ``\u0120``) and Whisper's special tokens, and a feature extractor with ``num_mel_bins`` mel
    bins over ``chunk_length``-second windows (``100 * chunk_length`` frames). Its vocabulary files are written to
    ``folder``; ``processor.save_pretrained`` saves it with a model."""
    transformers = require("transformers", "audio", purpose="building a Whisper tokenizer")
    if not alphabet or len(set(alphabet)) != len(alphabet):
        raise InvalidInputError("alphabet must be a non-empty string of distinct characters")
    if not (isinstance(chunk_length, int) and chunk_length > 0 and isinstance(num_mel_bins, int) and num_mel_bins > 0):
        raise InvalidInputError(f"chunk_length and num_mel_bins must be positive integers, got {chunk_length}, {num_mel_bins}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = {c: i for i, c in enumerate([*alphabet, "\u0120"])}
    for s in WHISPER_SPECIALS:
        vocab[s] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    eot = WHISPER_SPECIALS[0]
    tokenizer = transformers.WhisperTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), unk_token=eot,
                                              bos_token=eot, eos_token=eot, pad_token=eot,
                                              additional_special_tokens=list(WHISPER_SPECIALS[1:]))
    fe = transformers.WhisperFeatureExtractor(feature_size=num_mel_bins, sampling_rate=sampling_rate, hop_length=160,
                                              chunk_length=chunk_length, n_fft=400)
    return transformers.WhisperProcessor(feature_extractor=fe, tokenizer=tokenizer)


def small_whisper(processor: Any, *, d_model: int = 64, layers: int = 2, heads: int = 4, ffn_dim: int | None = None,
                  max_target_positions: int = 32, seed: int = 0) -> Any:
    """A randomly initialised ``WhisperForConditionalGeneration`` sized for ``processor`` (vocabulary, mel bins,
    frames); ``generate`` decodes greedily after ``<|startoftranscript|><|notimestamps|>``."""
    transformers = require("transformers", "audio", purpose="building a Whisper model")
    tok, fe = processor.tokenizer, processor.feature_extractor
    eot, sot, no_ts = tok.convert_tokens_to_ids([WHISPER_SPECIALS[0], WHISPER_SPECIALS[1], WHISPER_SPECIALS[4]])
    cfg = transformers.WhisperConfig(
        vocab_size=len(tok), num_mel_bins=fe.feature_size, encoder_layers=layers, decoder_layers=layers,
        d_model=d_model, encoder_attention_heads=heads, decoder_attention_heads=heads,
        encoder_ffn_dim=ffn_dim or 4 * d_model, decoder_ffn_dim=ffn_dim or 4 * d_model,
        max_source_positions=fe.nb_max_frames // 2, max_target_positions=max_target_positions,
        pad_token_id=eot, bos_token_id=eot, eos_token_id=eot, decoder_start_token_id=sot,
        begin_suppress_tokens=None, suppress_tokens=None)
    torch.manual_seed(seed)
    model = transformers.WhisperForConditionalGeneration(cfg)
    model.generation_config = transformers.GenerationConfig(
        decoder_start_token_id=sot, eos_token_id=eot, pad_token_id=eot, bos_token_id=eot, no_timestamps_token_id=no_ts,
        max_length=max_target_positions, is_multilingual=False)
    return model.eval()


def whisper_parameter_groups(model: nn.Module) -> dict[str, list[nn.Parameter]]:
    """``{"encoder": [...], "decoder": [...]}``: the audio encoder (convolutions, positions, blocks) and the text
    decoder (embeddings, blocks and the output projection, which Whisper ties to the token embedding)."""
    whisper = model.model if isinstance(model, WhisperWrapper) else model
    base = getattr(whisper, "model", whisper)
    encoder, decoder = getattr(base, "encoder", None), getattr(base, "decoder", None)
    if encoder is None or decoder is None:
        raise ErasusTypeError(f"{type(model).__name__} has no Whisper encoder/decoder (model.encoder / model.decoder)")
    enc = list(encoder.parameters())
    enc_ids = {id(p) for p in enc}
    dec_ids: set[int] = set()
    dec = []
    for p in whisper.parameters():  # the decoder and anything outside the encoder (the tied proj_out)
        if id(p) not in enc_ids and id(p) not in dec_ids:
            dec_ids.add(id(p))
            dec.append(p)
    return {"encoder": enc, "decoder": dec}


class WhisperWrapper(nn.Module):
    """A Whisper model with its feature extractor and tokenizer.

    Args:
        path_or_model: a local folder (or hub id) holding a saved ``WhisperForConditionalGeneration`` and its
            ``WhisperProcessor``, or a ``WhisperForConditionalGeneration`` instance.
        processor: the ``WhisperProcessor`` (needed with a model instance for :meth:`transcribe` / :meth:`items`).
        device: where to put the model.
    """

    def __init__(self, path_or_model: str | Path | nn.Module, *, processor: Any = None,
                 device: str | torch.device | None = None) -> None:
        super().__init__()
        transformers = require("transformers", "audio", purpose="Whisper")
        if isinstance(path_or_model, (str, Path)):
            path = Path(path_or_model).expanduser()
            where = str(path) if path.exists() else str(path_or_model)
            try:
                model = transformers.WhisperForConditionalGeneration.from_pretrained(where)
                processor = processor or transformers.WhisperProcessor.from_pretrained(where)
            except OSError as e:
                raise InvalidInputError(f"could not load a Whisper model and processor from {where!r}: {e}") from None
        elif isinstance(path_or_model, nn.Module):
            model = path_or_model
            if not hasattr(getattr(model, "model", None), "encoder") or not hasattr(model, "generate"):
                raise ErasusTypeError(f"WhisperWrapper takes a WhisperForConditionalGeneration, got {type(model).__name__}")
        else:
            raise ErasusTypeError(f"path_or_model must be a folder, a hub id or a Whisper model, got {type(path_or_model).__name__}")
        self.model = model.to(device) if device is not None else model
        self.config = model.config  # Seq2SeqTask reads max_target_positions / vocab_size here
        self.processor = processor

    @property
    def feature_extractor(self) -> Any:
        return self._processor_part("feature_extractor")

    @property
    def tokenizer(self) -> Any:
        return self._processor_part("tokenizer")

    def _processor_part(self, name: str) -> Any:
        if self.processor is None:
            raise InvalidInputError(f"this WhisperWrapper has no processor; pass processor= to use its {name}")
        return getattr(self.processor, name)

    def forward(self, **inputs: Any) -> Any:
        return self.model(**inputs)

    def get_encoder(self) -> nn.Module:
        return self.model.get_encoder()

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """``{"encoder": ..., "decoder": ...}`` (see :func:`whisper_parameter_groups`)."""
        return whisper_parameter_groups(self)

    def train_only(self, *groups: str) -> "WhisperWrapper":
        """Make only the named parameter groups trainable (``requires_grad``); a strategy then unlearns in them."""
        known = self.parameter_groups()
        unknown = [g for g in groups if g not in known]
        if not groups or unknown:
            raise InvalidInputError(f"train_only takes group names from {sorted(known)}, got {list(groups)}")
        keep = {id(p) for g in groups for p in known[g]}
        for p in self.model.parameters():
            p.requires_grad_(id(p) in keep)
        return self

    def _device(self) -> torch.device:
        return next(self.model.parameters()).device

    def features(self, audio: np.ndarray | Sequence[np.ndarray], *, sampling_rate: int | None = None) -> torch.Tensor:
        """Log-mel ``input_features`` (B, mel_bins, frames) of one clip or a list of clips (float arrays)."""
        clips = [audio] if isinstance(audio, np.ndarray) and audio.ndim == 1 else list(audio)
        if not clips:
            raise InvalidInputError("no audio given")
        fe = self.feature_extractor
        sr = int(sampling_rate or fe.sampling_rate)
        if sr != fe.sampling_rate:
            from ..data.audio import resample

            clips = [resample(np.asarray(c, dtype=np.float32), sr, fe.sampling_rate) for c in clips]
        for i, c in enumerate(clips):
            c = np.asarray(c)
            if c.ndim != 1 or c.size == 0 or not np.issubdtype(c.dtype, np.floating) or not np.isfinite(c).all():
                raise InvalidInputError(f"audio clip {i} must be a non-empty finite 1-D float array, got {c.dtype} {c.shape}")
        return fe([np.asarray(c, dtype=np.float32) for c in clips], sampling_rate=fe.sampling_rate,
                  return_tensors="pt").input_features

    def items(self, audio: Sequence[np.ndarray], texts: Sequence[str], *, sampling_rate: int | None = None
              ) -> list[dict[str, torch.Tensor]]:
        """Training / forget items ``{"input_features", "labels"}`` (labels without the leading start token)."""
        if len(audio) != len(texts):
            raise InvalidInputError(f"{len(audio)} clips but {len(texts)} transcripts")
        feats = self.features(list(audio), sampling_rate=sampling_rate)
        start = self.model.config.decoder_start_token_id
        out = []
        for f, t in zip(feats, texts):
            ids = list(self.tokenizer(t).input_ids)
            out.append({"input_features": f, "labels": torch.tensor(ids[1:] if ids and ids[0] == start else ids)})
        return out

    @torch.no_grad()
    def transcribe(self, audio: np.ndarray | Sequence[np.ndarray], *, sampling_rate: int | None = None,
                   max_new_tokens: int | None = None, batch_size: int = 32) -> str | list[str]:
        """Greedy transcripts (``model.generate``) of one clip (a str) or a list of clips (a list)."""
        single = isinstance(audio, np.ndarray) and audio.ndim == 1
        clips = [audio] if single else list(audio)
        feats = self.features(clips, sampling_rate=sampling_rate)
        limit = max_new_tokens or max(self.model.config.max_target_positions - 2, 1)
        was = self.model.training
        self.model.eval()
        texts: list[str] = []
        try:
            for i in range(0, len(feats), batch_size):
                ids = self.model.generate(input_features=feats[i:i + batch_size].to(self._device()), max_new_tokens=limit)
                texts += [t.strip() for t in self.tokenizer.batch_decode(ids, skip_special_tokens=True)]
        finally:
            self.model.train(was)
        return texts[0] if single else texts

    def save_pretrained(self, folder: str | Path) -> None:
        """Model and processor into one folder, loadable by ``WhisperWrapper(folder)`` or
        ``ErasusUnlearner(model_name=folder)``."""
        self.model.save_pretrained(str(folder))
        if self.processor is not None:
            self.processor.save_pretrained(str(folder))
