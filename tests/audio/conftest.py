"""Fixtures for the audio tests (material in audio_helpers.py); tiny models built offline only."""

from __future__ import annotations

import pytest

pytest.importorskip("transformers")

from audio_helpers import FORGET_TEXTS, RETAIN_TEXTS, items, memorise, processor, tiny_whisper


@pytest.fixture(scope="package")
def proc(tmp_path_factory):
    return processor(tmp_path_factory.mktemp("whisper_proc"))


@pytest.fixture(scope="package")
def tokenizer(proc):
    return proc.tokenizer


@pytest.fixture(scope="package")
def memorised(proc):
    """(tiny Whisper that transcribes all 8 training clips exactly, forget items, retain items)."""
    forget = items(proc, FORGET_TEXTS, seed=1)
    retain = items(proc, RETAIN_TEXTS, seed=2)
    model = memorise(tiny_whisper(proc, seed=0), forget + retain)
    return model, forget, retain
