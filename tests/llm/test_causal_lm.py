"""CausalLMTask: answer-only masking, encoding, padding/truncation, chat templates, infer_task."""

from __future__ import annotations

import copy

import pytest
import torch
from erasus.data.llm import LMCollator, LMDataset
from erasus.errors import InvalidInputError
from erasus.tasks import infer_task
from erasus.tasks.causal_lm import IGNORE_INDEX, CausalLMTask, encode_prompt, encode_prompt_answer
from llm_helpers import FORGET, tiny_gpt2, tiny_llama


def _hand_losses(logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> list[float]:
    """Float64 loop: mean over answer positions j of -log softmax(logits[j-1])[input_ids[j]]."""
    out = []
    logp = torch.log_softmax(logits.double(), dim=-1)
    for i in range(batch["input_ids"].shape[0]):
        terms = [
            -float(logp[i, j - 1, batch["input_ids"][i, j]])
            for j in range(1, batch["input_ids"].shape[1])
            if batch["labels"][i, j] != IGNORE_INDEX
        ]
        out.append(sum(terms) / len(terms))
    return out


@pytest.mark.parametrize("make", [tiny_gpt2, tiny_llama])
def test_answer_only_loss_equals_hand_computation(tokenizer, make):
    model = make(len(tokenizer))
    ds = LMDataset([{"prompt": q, "answer": a} for q, a in FORGET], tokenizer, max_length=32)
    task = CausalLMTask()
    with torch.no_grad():
        logits = task.outputs(model, ds.batch)
        got = task.per_sample_loss(model, ds.batch)
        summed = task.log_likelihood(model, ds.batch)
        normalized = task.log_likelihood(model, ds.batch, normalize=True)
    want = torch.tensor(_hand_losses(logits, ds.batch), dtype=torch.float64)
    counts = (ds.batch["labels"][:, 1:] != IGNORE_INDEX).sum(-1)
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(normalized.double(), -want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(summed.double(), -want * counts, rtol=1e-5, atol=1e-5)


def test_single_sample_loss_matches_transformers_loss(tokenizer):
    model = tiny_llama(len(tokenizer))
    enc = encode_prompt_answer(tokenizer, *FORGET[0], max_length=32)
    batch = {k: torch.tensor([v]) for k, v in enc.items()}
    with torch.no_grad():
        ours = CausalLMTask().per_sample_loss(model, batch)
        theirs = model(**batch).loss
    torch.testing.assert_close(ours[0], theirs, rtol=1e-5, atol=1e-6)


def test_prompt_tokens_are_masked_and_answer_ends_with_eos(tokenizer):
    q, a = FORGET[1]
    enc = encode_prompt_answer(tokenizer, q, a, max_length=64)
    prompt = tokenizer(q)["input_ids"]
    answer = tokenizer(a, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    assert enc["input_ids"] == prompt + answer
    assert enc["labels"] == [IGNORE_INDEX] * len(prompt) + answer


def test_truncation_keeps_prompt_end_and_answer_start(tokenizer):
    q, a = FORGET[2]
    full = encode_prompt_answer(tokenizer, q, a, max_length=64)
    n_prompt = full["labels"].count(IGNORE_INDEX)
    enc = encode_prompt_answer(tokenizer, q, a, max_length=n_prompt + 2)
    assert enc["input_ids"] == full["input_ids"][: n_prompt + 2]
    short = encode_prompt_answer(tokenizer, q, a, max_length=3)
    assert len(short["input_ids"]) == 3 and short["labels"][-1] != IGNORE_INDEX
    assert short["input_ids"][-1] == full["input_ids"][n_prompt]  # first answer token survives
    with pytest.raises(InvalidInputError, match="max_length"):
        encode_prompt_answer(tokenizer, q, a, max_length=1)


def test_plain_text_gets_bos_and_every_token_scored(tokenizer):
    enc = encode_prompt_answer(tokenizer, "", "Cato Wren writes crime novels.", max_length=32)
    assert enc["input_ids"][0] == tokenizer.bos_token_id
    assert enc["labels"][0] == IGNORE_INDEX and all(t != IGNORE_INDEX for t in enc["labels"][1:])


def test_chat_template_is_used_when_present(tokenizer):
    tok = copy.deepcopy(tokenizer)
    tok.chat_template = "{% for m in messages %}<s> {{ m['content'] }} </s>{% endfor %}{% if add_generation_prompt %} the{% endif %}"
    ids = encode_prompt(tok, "Who wrote the red book?")
    assert ids == tok("Who wrote the red book? the", add_special_tokens=False)["input_ids"][:0] + tok.convert_tokens_to_ids(
        ["<s>", "Who", "wrote", "the", "red", "book", "?", "</s>", "the"]
    )
    enc = encode_prompt_answer(tok, "Who wrote the red book?", "Alba Quist", max_length=32)
    assert enc["labels"].count(IGNORE_INDEX) == len(ids)
    assert encode_prompt(tok, "Who wrote the red book?", chat_template=False) == tokenizer("Who wrote the red book?")[
        "input_ids"
    ]
    assert encode_prompt(tok, "") == [tok.bos_token_id]  # plain text never becomes a chat turn
    with pytest.raises(InvalidInputError, match="chat_template"):
        encode_prompt(tokenizer, "hi", chat_template=True)


def test_collator_pads_like_dataset_and_handles_indices(tokenizer):
    records = [{"prompt": q, "answer": a} for q, a in FORGET]
    ds = LMDataset(records, tokenizer, max_length=32)
    collate = LMCollator(tokenizer, max_length=32)
    batch = collate(records)
    for k in ("input_ids", "attention_mask", "labels"):
        assert torch.equal(batch[k], ds.batch[k][:, : batch[k].shape[1]])
    assert bool((batch["labels"][batch["attention_mask"] == 0] == IGNORE_INDEX).all())
    trimmed, idx = collate([(ds[i], i) for i in (2, 0)])
    assert idx.tolist() == [2, 0]
    longest = int(ds.batch["attention_mask"][[2, 0]].sum(-1).max())
    assert torch.equal(trimmed["input_ids"], ds.batch["input_ids"][[2, 0], :longest])


def test_padding_does_not_change_the_loss(tokenizer):
    model = tiny_gpt2(len(tokenizer))
    task = CausalLMTask(tokenizer=tokenizer, max_length=64)
    alone = task.collate([FORGET[0]])
    padded = task.collate([FORGET[0], ("Who wrote the red book? " * 3, FORGET[3][1])])
    assert padded["input_ids"].shape[1] > alone["input_ids"].shape[1]
    with torch.no_grad():
        torch.testing.assert_close(task.per_sample_loss(model, padded)[0], task.per_sample_loss(model, alone)[0],
                                   rtol=1e-5, atol=1e-6)


def test_infer_task_recognises_causal_lms(tokenizer):
    assert isinstance(infer_task(tiny_gpt2(len(tokenizer))), CausalLMTask)
    assert isinstance(infer_task(tiny_llama(len(tokenizer))), CausalLMTask)


def test_bad_batches_raise_clear_errors(tokenizer):
    task = CausalLMTask(tokenizer=tokenizer)
    model = tiny_gpt2(len(tokenizer))
    with pytest.raises(TypeError, match="input_ids"):
        task.per_sample_loss(model, (torch.zeros(2, 3),))
    batch = task.collate([FORGET[0]])
    batch["labels"][:] = IGNORE_INDEX
    with pytest.raises(InvalidInputError, match="no answer tokens"):
        task.per_sample_loss(model, batch)
    with pytest.raises(InvalidInputError, match="tokenizer"):
        CausalLMTask().encode("a", "b")
