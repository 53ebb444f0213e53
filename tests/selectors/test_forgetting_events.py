import itertools

import erasus
import numpy as np
import pytest
import torch
from erasus.data import IndexedDataset, as_loader, split_indexed
from erasus.errors import InvalidInputError
from erasus.selectors.forgetting_events import ForgettingRecorder


def _count(row):
    seen = [v for v in row if not np.isnan(v)]
    if 1 not in seen:
        return float(len(row) + 1)
    return float(sum(1 for a, b in itertools.pairwise(seen) if a == 1 and b == 0))


def test_forgetting_counts_from_a_history():
    nan = np.nan
    h = np.array([[0, 1, 0, 1, 0], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0], [1, nan, 0, nan, 1], [0, 1, 1, 0, 0]], float)
    sel = erasus.select(h, 3, method="forgetting_events")
    np.testing.assert_array_equal(sel.metadata["scores"], [_count(r) for r in h])  # [2, 0, 6, 1, 1]
    assert sel.indices.tolist() == [2, 0, 3]
    assert erasus.select(h, 1, method="forgetting_events", keep="unforgettable").indices.tolist() == [1]


def test_recorder_during_training_matches_a_direct_replay():
    torch.manual_seed(0)
    x, y = torch.randn(40, 4), torch.randint(0, 3, (40,))
    y[:8] = torch.randint(0, 3, (8,))
    model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    rec, replay = ForgettingRecorder(40), [[] for _ in range(40)]
    for epoch in range(6):
        for batch in as_loader(IndexedDataset((x, y)), batch_size=8, shuffle=True, seed=epoch):
            (xb, yb), idx = split_indexed(batch)
            logits = model(xb)
            rec.update(idx, logits, yb)
            for i, c in zip(idx.tolist(), (logits.argmax(1) == yb).tolist()):
                replay[i].append(float(c))
            opt.zero_grad()
            torch.nn.functional.cross_entropy(logits, yb).backward()
            opt.step()
    np.testing.assert_array_equal(rec.history(), np.array(replay))
    sel = erasus.get_selector("forgetting_events").select(10, recorder=rec)
    np.testing.assert_array_equal(sel.metadata["scores"], [_count(r) for r in replay])
    rec.observe(model, (x, y))
    assert rec.history().shape == (40, 7)


def test_forgetting_errors():
    rec = ForgettingRecorder(3)
    with pytest.raises(InvalidInputError, match=r"\[0, 3\)"):
        rec.update([5], np.zeros((1, 2)), [0])
    with pytest.raises(InvalidInputError, match="logits"):
        rec.update([0, 1], np.zeros((3, 2)), [0, 1])
    with pytest.raises(InvalidInputError, match="other than 0, 1"):
        erasus.select(np.full((3, 2), 0.5), 1, method="forgetting_events")
    with pytest.raises(InvalidInputError, match="not both"):
        erasus.get_selector("forgetting_events").select(1, features=np.zeros((3, 2)), recorder=rec)
