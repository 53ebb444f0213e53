"""WhisperWrapper: transcribe, save / load by path (also through ErasusUnlearner(model_name=...)), encoder /
decoder parameter groups that partition the model and let a strategy unlearn in one of them."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import erasus
from audio_helpers import FORGET_TEXTS, RETAIN_TEXTS, clips
from erasus.errors import ErasusTypeError, InvalidInputError
from erasus.models import WhisperWrapper


def test_transcribe_returns_the_memorised_transcripts(memorised, proc):
    model, _, _ = memorised
    w = WhisperWrapper(model, processor=proc)
    audio = clips(3, seed=1) + clips(5, seed=2)
    assert w.transcribe(audio) == FORGET_TEXTS + RETAIN_TEXTS
    assert w.transcribe(audio[0]) == "go"
    # the same clip at 8 kHz is resampled to the extractor's 16 kHz first
    import soxr
    assert w.transcribe(soxr.resample(audio[1], 16000, 8000), sampling_rate=8000) == "seven"
    with pytest.raises(InvalidInputError, match="finite 1-D float"):
        w.transcribe(np.full(800, np.nan, dtype=np.float32))
    with pytest.raises(InvalidInputError, match="finite 1-D float"):
        w.transcribe([audio[0], np.zeros(0, dtype=np.float32)])


def test_saved_folder_loads_through_the_wrapper_and_the_unlearner(memorised, proc, tmp_path):
    model, forget, _ = memorised
    WhisperWrapper(model, processor=proc).save_pretrained(tmp_path / "w")
    loaded = WhisperWrapper(tmp_path / "w")
    assert loaded.transcribe(clips(3, seed=1)) == FORGET_TEXTS
    unl = erasus.ErasusUnlearner(model_name=str(tmp_path / "w"), strategy="gradient_ascent", selector="full")
    assert isinstance(unl.model, WhisperWrapper)
    for a, b in zip(unl.model.parameters(), model.parameters()):
        assert torch.equal(a, b)
    with pytest.raises(InvalidInputError, match="does not exist"):
        erasus.ErasusUnlearner(model_name=str(tmp_path / "missing"), strategy="gradient_ascent")
    with pytest.raises(ErasusTypeError, match="WhisperForConditionalGeneration"):
        WhisperWrapper(torch.nn.Linear(2, 2))


def test_parameter_groups_partition_the_model_and_train_only_unlearns_in_one(memorised, proc):
    model, forget, _ = memorised
    w = WhisperWrapper(copy.deepcopy(model), processor=proc)
    groups = w.parameter_groups()
    ids = [id(p) for g in groups.values() for p in g]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    enc_ids = {id(p) for p in w.model.model.encoder.parameters()}
    assert {id(p) for p in groups["encoder"]} == enc_ids
    w.train_only("decoder")
    out = erasus.get_strategy("gradient_ascent", lr=5e-2).unlearn(model=w, forget_data=forget, steps=3, progress=False)
    for (name, a), b in zip(model.named_parameters(), out.model.parameters()):
        if name.startswith("model.encoder."):
            assert torch.equal(a, b), name
    assert any(not torch.equal(a, b) for a, b in zip(model.model.decoder.parameters(), out.model.model.decoder.parameters()))
    for a, b in zip(model.parameters(), w.model.parameters()):  # the caller's wrapper is untouched
        assert torch.equal(a, b)
    with pytest.raises(InvalidInputError, match="group names"):
        w.train_only("vision")
