"""LM items batched wherever they are (issue 20, item 11): a ConcatDataset of LMDatasets padded to different
lengths is padded per batch, and fine-tuning runs on a retain set alone."""

from __future__ import annotations

import erasus
import torch
from erasus.data import as_loader, collate_of
from erasus.data.llm import LMDataset
from erasus.tasks.causal_lm import CausalLMTask
from llm_helpers import FORGET, RETAIN, tiny_gpt2


def test_concat_of_lm_datasets_is_padded_per_batch_and_scores_like_each_item_alone(tokenizer):
    short = LMDataset([{"prompt": q, "answer": "Yes."} for q, _ in FORGET], tokenizer, max_length=32)
    long = LMDataset([{"prompt": q, "answer": a + " " + a} for q, a in RETAIN], tokenizer, max_length=32)
    assert short.batch["input_ids"].shape[1] != long.batch["input_ids"].shape[1]
    both = torch.utils.data.ConcatDataset([short, long])
    batch = next(iter(as_loader(both, batch_size=len(both))))
    model, task = tiny_gpt2(len(tokenizer)), CausalLMTask(tokenizer=tokenizer)
    with torch.no_grad():
        losses = task.per_sample_loss(model, batch)
        # reference: every item scored on its own, without any padding
        alone = []
        for i in range(len(both)):
            item = both[i]
            n = int(item["attention_mask"].sum())
            one = {k: v[:n].unsqueeze(0) for k, v in item.items()}
            alone.append(task.per_sample_loss(model, one)[0])
    torch.testing.assert_close(losses, torch.stack(alone), rtol=1e-5, atol=1e-5)
    assert collate_of(short) is torch.utils.data.default_collate  # one dataset: its items already share a length


def test_finetune_runs_on_a_concatenated_retain_set_without_a_forget_set(tokenizer):
    forget = LMDataset([{"prompt": q, "answer": a} for q, a in FORGET], tokenizer, max_length=32)
    retain = LMDataset([{"prompt": q, "answer": a + " " + a} for q, a in RETAIN], tokenizer, max_length=32)
    model = tiny_gpt2(len(tokenizer))
    out = erasus.get_strategy("finetune", lr=1e-2, batch_size=4).unlearn(
        model=model, retain_data=torch.utils.data.ConcatDataset([forget, retain]), steps=3, progress=False)
    assert any(not torch.equal(a, b) for a, b in zip(out.parameters(), model.parameters()))
