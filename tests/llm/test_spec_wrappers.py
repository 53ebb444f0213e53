"""The seed specification's wrappers: LLaMAWrapper / MistralWrapper / GPTWrapper and BERTWrapper."""

from __future__ import annotations

import erasus
import pytest
import torch
from erasus.errors import InvalidInputError
from erasus.models import BERTWrapper, GPTWrapper, LLaMAWrapper, MistralWrapper
from llm_helpers import tiny_gpt2, tiny_llama


def tiny_mistral(vocab_size: int):
    from transformers import MistralConfig, MistralForCausalLM

    torch.manual_seed(0)
    return MistralForCausalLM(MistralConfig(
        vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, max_position_embeddings=64, pad_token_id=0, bos_token_id=2, eos_token_id=3,
    )).eval()


@pytest.mark.parametrize("cls, make", [(LLaMAWrapper, tiny_llama), (GPTWrapper, tiny_gpt2),
                                       (MistralWrapper, tiny_mistral)])
def test_family_wrapper_layer_activations_match_hidden_states(tmp_path, tokenizer, cls, make):
    model = make(len(tokenizer))
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    wrapper = cls(tmp_path, load_in_8bit=False)
    text = "Who wrote the red book?"
    acts = wrapper.get_layer_activations(text, [0, 1])
    with torch.no_grad():
        hidden = model(**tokenizer([text], return_tensors="pt"), output_hidden_states=True).hidden_states
    assert sorted(acts) == ["layer_0", "layer_1"]
    torch.testing.assert_close(acts["layer_0"], hidden[1])  # hidden_states[l + 1] is block l's output
    # the last entry of hidden_states has the final norm applied, the block's own output does not
    assert acts["layer_1"].shape == hidden[2].shape
    with pytest.raises(InvalidInputError, match="out of range"):
        wrapper.get_layer_activations(text, [7])


def test_family_wrapper_refuses_another_family_before_loading_weights(tmp_path, tokenizer):
    tiny_llama(len(tokenizer)).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"not weights")  # loading them would fail differently
    with pytest.raises(InvalidInputError, match="'llama' model; GPTWrapper"):
        GPTWrapper(tmp_path)


def tiny_bert(tokenizer, num_labels=3):
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    return BertForSequenceClassification(BertConfig(
        vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=64, num_labels=num_labels, pad_token_id=tokenizer.pad_token_id,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )).eval()


def test_bert_wrapper_masks_padding_and_runs_a_general_strategy(tmp_path, tokenizer):
    bert = tiny_bert(tokenizer)
    bert.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    wrapper = BERTWrapper(tmp_path).eval()
    texts = ["Who wrote the red book?", "Alba Quist was born in Norvik.", "I do not know ."]
    data = wrapper.tokenize(texts, [0, 1, 2])
    enc = tokenizer(texts, return_tensors="pt", padding=True)
    with torch.no_grad():
        torch.testing.assert_close(wrapper(data.tensors[0]), bert(**enc).logits, rtol=1e-4, atol=1e-5)
    before = erasus.get_metric("loss").compute(wrapper, data)["forget_loss"]
    out = erasus.get_strategy("gradient_ascent", lr=0.05).unlearn(model=wrapper, forget_data=data, steps=5,
                                                                 progress=False)
    assert isinstance(out, BERTWrapper)
    assert erasus.get_metric("loss").compute(out, data)["forget_loss"] > before
    with pytest.raises(InvalidInputError, match=r"labels must be in \[0, 3\)"):
        wrapper.tokenize(texts, [0, 1, 3])
