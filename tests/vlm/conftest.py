"""Fixtures for the vision-language tests (material in vlm_helpers.py); tiny models built offline only."""

from __future__ import annotations

import pytest

pytest.importorskip("transformers")

from vlm_helpers import make_pairs, tiny_clip, train_clip


@pytest.fixture(scope="package")
def processor():
    return tiny_clip()[1]


@pytest.fixture(scope="package")
def clip_data(processor):
    """(trained tiny CLIPModel, forget pairs of class 0, retain pairs of classes 1-3, held-out test pairs)."""
    model, _ = tiny_clip(seed=0)
    forget = make_pairs(processor, [0] * 12, seed=1)
    retain = make_pairs(processor, [1, 2, 3] * 8, seed=2)
    test = make_pairs(processor, [0, 1, 2, 3] * 4, seed=3)
    train_clip(model, forget + retain, steps=60)
    return model, forget, retain, test
