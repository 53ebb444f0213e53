"""Fixtures for the multimodal-LM tests (material in mllm_helpers.py); no network, tiny models only."""

from __future__ import annotations

import pytest

pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

from mllm_helpers import make_tokenizer


@pytest.fixture(scope="package")
def tokenizer():
    return make_tokenizer()
