"""Fixtures for the LLM tests (material in llm_helpers.py); no network, tiny models only."""

from __future__ import annotations

import pytest

pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

from llm_helpers import FORGET, FORGET_SUBJECTS, RETAIN, make_tokenizer, memorise, tiny_gpt2

from erasus.data.llm import LMDataset


@pytest.fixture(scope="package")
def tokenizer():
    return make_tokenizer()


@pytest.fixture(scope="package")
def memorised(tokenizer):
    """A tiny GPT-2 that memorised forget + retain QA pairs, plus the two datasets."""
    forget = LMDataset([{"prompt": q, "answer": a, "subject": s} for (q, a), s in zip(FORGET, FORGET_SUBJECTS)],
                       tokenizer, max_length=32)
    retain = LMDataset([{"prompt": q, "answer": a} for q, a in RETAIN], tokenizer, max_length=32)
    both = LMDataset([{"prompt": q, "answer": a} for q, a in FORGET + RETAIN], tokenizer, max_length=32)
    model = memorise(tiny_gpt2(len(tokenizer)), both.batch)
    return model, forget, retain
