"""Model wrappers: local loading, family checks, block discovery and activation hooks."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from erasus.errors import InvalidInputError, MissingDependencyError
from erasus.models import activation_hooks, decoder_layers, load_causal_lm
from erasus.registry import get_model
from llm_helpers import tiny_gpt2, tiny_llama


@pytest.mark.parametrize("make", [tiny_gpt2, tiny_llama])
def test_hooks_record_block_outputs(tokenizer, make):
    model = make(len(tokenizer))
    assert len(decoder_layers(model)) == 2
    batch = tokenizer(["Who wrote the red book?"], return_tensors="pt")
    with torch.no_grad():
        out = model(**batch, output_hidden_states=True)
    hooks_before = len(decoder_layers(model)[0]._forward_hooks)
    with torch.no_grad(), activation_hooks(model, [0, -1]) as acts:
        model(**batch)
    assert sorted(acts) == [0, 1]
    torch.testing.assert_close(acts[0], out.hidden_states[1])  # hidden_states[l + 1] is block l's output
    assert len(decoder_layers(model)[0]._forward_hooks) == hooks_before  # ours are removed on exit
    with pytest.raises(InvalidInputError, match="out of range"), activation_hooks(model, [5]):
        pass


def test_load_local_checkpoint_and_family_check(tmp_path, tokenizer):
    model = tiny_llama(len(tokenizer))
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    loaded, tok = load_causal_lm(tmp_path)
    ids = tok("Who wrote the red book?", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids=ids).logits, model(input_ids=ids).logits)
    wrapper = get_model("llama", name_or_path=tmp_path)
    assert wrapper.task(max_length=16).tokenizer is wrapper.tokenizer
    with pytest.raises(InvalidInputError, match="not a gpt2"):
        get_model("gpt2", name_or_path=tmp_path)


@pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is not None, reason="bitsandbytes is installed")
def test_load_in_8bit_without_bitsandbytes_names_the_package(tmp_path, tokenizer):
    tiny_gpt2(len(tokenizer)).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    with pytest.raises(MissingDependencyError, match="bitsandbytes"):
        load_causal_lm(tmp_path, load_in_8bit=True)
