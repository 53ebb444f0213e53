"""``until=`` on a causal LM: NPO stops when the forget loss (answer tokens) rises above a target."""

from __future__ import annotations

import copy

import pytest
import torch

import erasus


def _answer_loss(model, data) -> float:
    """Mean per-sample answer-token cross-entropy, computed directly from the logits."""
    batch = data.batch
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    labels = batch["labels"][:, 1:]
    mask = labels != -100
    token = torch.nn.functional.cross_entropy(logits.transpose(1, 2).double(), labels.clamp(min=0),
                                              reduction="none")
    return float(((token * mask).sum(1) / mask.sum(1)).mean())


def test_npo_until_forget_loss_above(memorised):
    model, forget, retain = memorised
    start = _answer_loss(model, forget)
    target = start + 1.0
    npo = erasus.get_strategy("npo", batch_size=4)
    out = npo.unlearn(model=model, forget_data=forget, retain_data=retain, lr=5e-3, steps=200, progress=False,
                      until={"metric": "forget_loss", "above": target, "every": 2})
    summary = npo.info_["until"]
    assert summary["reached"] and 0 < summary["step"] < 200 and summary["step"] % 2 == 0
    assert npo.history_.checks[0]["value"] == pytest.approx(start, rel=1e-4)
    assert _answer_loss(out, forget) > target >= npo.history_.checks[-2]["value"]
    plain = erasus.get_strategy("npo", batch_size=4).unlearn(
        model=copy.deepcopy(model), forget_data=forget, retain_data=retain, lr=5e-3, steps=summary["step"],
        progress=False)
    for p, q in zip(out.parameters(), plain.parameters()):
        assert torch.equal(p, q)
