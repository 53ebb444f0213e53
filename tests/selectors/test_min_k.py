import math

import erasus
import numpy as np
import pytest
import torch
from erasus.errors import InvalidInputError


def test_min_k_on_token_log_probs():
    rng = np.random.default_rng(0)
    logp = -rng.exponential(size=(6, 10))
    logp[2, 7:] = np.nan  # padding
    k = 0.3
    ref = []
    for row in logp:
        tok = sorted(v for v in row if not np.isnan(v))
        m = math.ceil(k * len(tok))
        ref.append(sum(tok[:m]) / m)
    sel = erasus.select(logp, 2, method="min_k", k_percent=k)
    np.testing.assert_allclose(sel.metadata["scores"], ref, rtol=1e-6)
    assert sel.indices.tolist() == list(np.argsort(-np.array(ref), kind="stable")[:2])
    masked = erasus.get_selector("min_k", k_percent=k).select(2, features=np.nan_to_num(logp), mask=~np.isnan(logp))
    np.testing.assert_allclose(masked.metadata["scores"], ref, rtol=1e-6)


def test_min_k_from_a_tiny_causal_lm():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(vocab_size=50, bos_token_id=0, eos_token_id=0, n_positions=16, n_embd=16, n_layer=1, n_head=2)
    model = transformers.GPT2LMHeadModel(cfg).eval()
    ids = torch.randint(0, 50, (5, 9))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    data = [{"input_ids": ids[i], "attention_mask": mask[i]} for i in range(5)]
    sel = erasus.get_selector("min_k", k_percent=0.5, batch_size=2).select(3, model=model, data=data)
    ref = []
    with torch.no_grad():
        for i in range(5):  # one sequence at a time, no padding: an independent path
            n = int(mask[i].sum())
            logits = model(input_ids=ids[i:i + 1, :n]).logits[0].double()
            lp = torch.log_softmax(logits[:-1], -1).gather(1, ids[i, 1:n, None])[:, 0]
            low = torch.sort(lp).values[:math.ceil(0.5 * (n - 1))]
            ref.append(low.mean().item())
    np.testing.assert_allclose(sel.metadata["scores"], ref, rtol=1e-4)


def test_min_k_errors():
    with pytest.raises(InvalidInputError, match="k_percent"):
        erasus.get_selector("min_k", k_percent=0)
    with pytest.raises(InvalidInputError, match="log-probabilities"):
        erasus.select(np.ones((3, 4)), 1, method="min_k")
    with pytest.raises(InvalidInputError, match="no scored tokens"):
        erasus.select(np.full((2, 3), np.nan), 1, method="min_k")
