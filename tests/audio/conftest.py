"""Fixtures for the audio tests (material in audio_helpers.py); tiny models built offline only."""

from __future__ import annotations

import pytest

pytest.importorskip("transformers")

from audio_helpers import char_tokenizer


@pytest.fixture(scope="package")
def tokenizer(tmp_path_factory):
    return char_tokenizer(tmp_path_factory.mktemp("whisper_tok"))
