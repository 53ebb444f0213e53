import erasus
import numpy as np
import torch


def test_moderate_keeps_the_window_around_the_median_class_distance():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(41, 3)), rng.integers(0, 3, 41)
    d = np.empty(41)
    for i in range(41):  # independent loop reference
        same = x[y == y[i]]
        d[i] = np.sqrt(((x[i] - same.mean(0)) ** 2).sum())
    k = 11
    sel = erasus.select(x, k, method="moderate", labels=y)
    srt = np.sort(d)
    expected = set(np.argsort(d)[15:26])  # 41/2 - 11/2 = 15: the 11 middle distances
    assert set(sel.indices.tolist()) == expected
    assert abs(sel.metadata["median_distance"] - srt[20]) < 1e-5
    gaps = np.abs(d[sel.indices] - srt[20])
    assert np.all(np.diff(gaps) >= -1e-6)  # ranked by closeness to the median


def test_moderate_without_labels_uses_one_centre_and_model_embeddings():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU(), torch.nn.Linear(6, 3))
    x = torch.randn(30, 4)
    with torch.no_grad():
        emb = model[1](model[0](x)).numpy()
    ref = erasus.select(emb, 8, method="moderate", labels=np.zeros(30, dtype=int))
    sel = erasus.get_selector("moderate").select(8, model=model, data=(x, torch.zeros(30, dtype=torch.long)))
    np.testing.assert_array_equal(sel.indices, ref.indices)
    np.testing.assert_array_equal(erasus.select(emb, 8, method="moderate").indices, ref.indices)
