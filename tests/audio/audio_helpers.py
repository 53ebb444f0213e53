"""Tiny Whisper material built offline: a character-level Whisper tokenizer, a feature extractor for 1 s
clips with 16 mel bins, a 1+1-layer WhisperForConditionalGeneration and items of transcripts of different
lengths."""

from __future__ import annotations

import json
import string
from pathlib import Path

import numpy as np
import torch

SPECIALS = ["<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|transcribe|>", "<|notimestamps|>"]
MEL_BINS, FRAMES = 16, 100


def char_tokenizer(folder: Path):
    """A WhisperTokenizer whose BPE has no merges: one token per character (+ Whisper's special tokens)."""
    from transformers import WhisperTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    vocab = {c: i for i, c in enumerate(list(string.ascii_lowercase) + ["\u0120", "'"])}
    for s in SPECIALS:
        vocab[s] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return WhisperTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), unk_token=SPECIALS[0],
                            bos_token=SPECIALS[0], eos_token=SPECIALS[0], pad_token=SPECIALS[0],
                            additional_special_tokens=SPECIALS[1:])


def feature_extractor():
    from transformers import WhisperFeatureExtractor

    return WhisperFeatureExtractor(feature_size=MEL_BINS, sampling_rate=16000, hop_length=160, chunk_length=1, n_fft=400)


def tiny_whisper(tokenizer, *, seed: int = 0):
    from transformers import GenerationConfig, WhisperConfig, WhisperForConditionalGeneration

    eot, sot = tokenizer.convert_tokens_to_ids([SPECIALS[0], SPECIALS[1]])
    no_ts = tokenizer.convert_tokens_to_ids(SPECIALS[4])
    cfg = WhisperConfig(vocab_size=len(tokenizer), num_mel_bins=MEL_BINS, encoder_layers=1, decoder_layers=1,
                        d_model=16, encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
                        decoder_ffn_dim=32, max_source_positions=FRAMES // 2, max_target_positions=16,
                        pad_token_id=eot, bos_token_id=eot, eos_token_id=eot, decoder_start_token_id=sot,
                        begin_suppress_tokens=None, suppress_tokens=None)
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(cfg).eval()
    model.generation_config = GenerationConfig(decoder_start_token_id=sot, eos_token_id=eot, pad_token_id=eot,
                                               bos_token_id=eot, no_timestamps_token_id=no_ts, max_length=16,
                                               is_multilingual=False)
    return model


def labels_of(tokenizer, text: str) -> torch.Tensor:
    """Target tokens as transformers' speech seq2seq collator leaves them: the tokenizer's ids without the
    leading <|startoftranscript|> (the model prepends it as decoder_start_token_id)."""
    return torch.tensor(tokenizer(text).input_ids[1:])


def items(tokenizer, texts, *, seed: int = 0):
    g = np.random.default_rng(seed)
    fe = feature_extractor()
    out = []
    for t in texts:
        audio = g.standard_normal(int(g.integers(4000, 16000))).astype(np.float32) * 0.1
        feats = fe(audio, sampling_rate=16000, return_tensors="pt").input_features[0]
        out.append({"input_features": feats, "labels": labels_of(tokenizer, t)})
    return out
