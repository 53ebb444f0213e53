"""Tiny Whisper material built offline: the library's character-level Whisper processor for 1 s clips with
16 mel bins, a 1+1-layer model, items of transcripts of different lengths, and memorisation training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from erasus.models import char_whisper_processor, small_whisper, tiny
from erasus.tasks.seq2seq import Seq2SeqCollator, Seq2SeqTask

MEL_BINS = 16
# the memorised fixture's transcripts (conftest.py); here so tests import them by a unique module name
FORGET_TEXTS = ["go", "seven", "up left"]
RETAIN_TEXTS = ["no", "six", "down", "one two", "yes"]


def processor(folder: Path):
    return char_whisper_processor(folder, num_mel_bins=MEL_BINS, chunk_length=1)


def tiny_whisper(proc, *, seed: int = 0):
    return small_whisper(proc, d_model=16, layers=1, heads=2, max_target_positions=16, seed=seed)


def clips(n: int, *, seed: int = 0) -> list[np.ndarray]:
    """Distinct noise bursts (one pitch each) of different lengths: a tiny model tells them apart."""
    g = np.random.default_rng(seed)
    out = []
    for i in range(n):
        t = np.arange(int(g.integers(6000, 16000))) / 16000
        out.append((0.3 * np.sin(2 * np.pi * (300 + 250 * i + 40 * seed) * t) + 0.02 * g.standard_normal(t.size)).astype(np.float32))
    return out


def items(proc, texts, *, seed: int = 0):
    """``{"input_features", "labels"}`` items (labels without the leading start token, as the model prepends it)."""
    fe, tok = proc.feature_extractor, proc.tokenizer
    out = []
    for audio, text in zip(clips(len(texts), seed=seed), texts):
        feats = fe(audio, sampling_rate=16000, return_tensors="pt").input_features[0]
        out.append({"input_features": feats, "labels": torch.tensor(tok(text).input_ids[1:])})
    return out


def memorise(model, data, *, steps: int = 80, lr: float = 1e-2):
    return tiny.memorise(model, Seq2SeqCollator()(data), task=Seq2SeqTask(), steps=steps, lr=lr, optimizer="adam")
