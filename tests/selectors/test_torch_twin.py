"""The torch twin of the geometric selectors (CUDA tensors, ``backend="torch"``, streamed ``np.memmap``) against
the Rust core and brute force, on CPU through the same torch code path that a CUDA tensor takes."""

import importlib.util

import numpy as np
import pytest
import torch

import erasus
from erasus import _core
from erasus.errors import InvalidInputError, MemoryBudgetError, NonFiniteError
from erasus.selectors import _ann, _torch


def mixture(n, d, seed, clusters=6, spread=6.0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(0.0, spread, (clusters, d))
    return (centers[rng.integers(0, clusters, n)] + rng.normal(0.0, 1.0, (n, d))).astype(np.float32)


def same_selection(a, b, *, rtol=1e-5):
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_array_equal(a.weights, b.weights)
    if a.gains is None:
        assert b.gains is None
    else:
        np.testing.assert_allclose(a.gains, b.gains, rtol=rtol, atol=1e-6)
    assert a.objective == pytest.approx(b.objective, rel=rtol, abs=1e-6)


def brute_kcenter(x, k, first):
    """Textbook farthest-point greedy in float64."""
    x = x.astype(np.float64)
    picks = [first]
    dist = np.linalg.norm(x - x[first], axis=1)
    for _ in range(k - 1):
        dist[picks] = -1.0
        picks.append(int(np.argmax(dist)))
        dist = np.minimum(dist, np.linalg.norm(x - x[picks[-1]], axis=1))
    return picks


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("initial", [None, [3, 17, 3]])
def test_kcenter_torch_matches_rust(metric, initial):
    x = mixture(400, 6, seed=1)
    rust = erasus.select(x, 25, method="kcenter", seed=5, metric=metric, initial=initial, backend="rust")
    twin = erasus.select(torch.from_numpy(x), 25, method="kcenter", seed=5, metric=metric, initial=initial,
                         backend="torch")
    same_selection(rust, twin)
    assert twin.metadata["backend"] == "torch"


def test_kcenter_torch_matches_float64_brute_force():
    x = mixture(300, 4, seed=2)
    sel = erasus.select(torch.from_numpy(x), 15, method="kcenter", seed=9, backend="torch")
    assert sel.indices.tolist() == brute_kcenter(x, 15, int(sel.indices[0]))
    assert sel.indices[0] == _core.seeding_draws(9, 300, 0)[0]


def test_herding_torch_matches_rust_and_moment_error():
    x = mixture(500, 7, seed=3)
    rust = erasus.select(x, 40, method="herding", backend="rust")
    twin = erasus.select(torch.from_numpy(x), 40, method="herding", backend="torch")
    same_selection(rust, twin)
    x64 = x.astype(np.float64)
    err = np.linalg.norm(x64[twin.indices].mean(axis=0) - x64.mean(axis=0))
    assert twin.objective == pytest.approx(err, rel=1e-9)


def test_kmeans_torch_matches_rust():
    x = mixture(600, 5, seed=4, clusters=8, spread=10.0)
    for max_iter in (0, 100):
        rust = erasus.select(x, 8, method="kmeans", seed=11, max_iter=max_iter, backend="rust")
        twin = erasus.select(torch.from_numpy(x), 8, method="kmeans", seed=11, max_iter=max_iter, backend="torch")
        same_selection(rust, twin)
        assert twin.weights.sum() == 600


def test_kmeans_seeding_draws_follow_the_rust_stream():
    # max_iter = 0 returns the k-means++ seeds themselves (each seed is the nearest untaken row of its centroid)
    x = mixture(800, 3, seed=5, clusters=12)
    for seed in (0, 1, 2**40 + 3):
        rust = _core.kmeans(x, 12, seed=seed, max_iter=0)
        twin = _torch.kmeans(_torch.as_rows(torch.from_numpy(x)), 12, seed=seed, max_iter=0)
        np.testing.assert_array_equal(rust[0], twin[0])


@pytest.mark.parametrize("similarity", ["craig", "cosine", "rbf"])
def test_dense_facility_location_torch_matches_rust(similarity):
    x = mixture(250, 5, seed=6)
    rust = erasus.select(x, 30, method="facility_location", similarity=similarity, backend="rust")
    twin = erasus.select(torch.from_numpy(x), 30, method="facility_location", similarity=similarity,
                         backend="torch")
    same_selection(rust, twin)
    assert twin.weights.sum() == 250


@pytest.mark.parametrize("similarity", ["craig", "cosine", "rbf"])
def test_knn_facility_location_torch_matches_rust(similarity):
    x = mixture(700, 6, seed=7)
    rust = erasus.select(x, 40, method="facility_location", similarity=similarity, neighbors=15, backend="rust")
    twin = erasus.select(torch.from_numpy(x), 40, method="facility_location", similarity=similarity,
                         neighbors=15, backend="torch")
    same_selection(rust, twin)
    assert twin.metadata["graph"] == "exact"


def test_per_class_facility_location_torch_matches_rust():
    x = mixture(300, 4, seed=8)
    labels = np.arange(300) % 3
    rust = erasus.select(x, 12, method="craig", labels=labels, backend="rust")
    twin = erasus.select(torch.from_numpy(x), 12, method="craig", labels=labels, backend="torch")
    same_selection(rust, twin)


def test_knn_graph_torch_matches_brute_force():
    x = mixture(500, 4, seed=9)
    ids, dist = _torch.knn_graph(torch.from_numpy(x), 8)
    d64 = np.linalg.norm(x[:, None, :].astype(np.float64) - x[None, :, :], axis=2)
    want = np.argsort(d64, axis=1, kind="stable")[:, :8]
    np.testing.assert_array_equal(np.sort(ids.numpy(), axis=1), np.sort(want, axis=1))
    np.testing.assert_allclose(dist.numpy(), np.take_along_axis(d64, want, axis=1), atol=2e-3)
    assert (ids[:, 0].numpy() == np.arange(500)).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_memmap_streams_in_blocks_like_the_in_memory_result(tmp_path, dtype):
    x = mixture(1500, 6, seed=10)
    mm = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=dtype, shape=x.shape)
    mm[:] = x
    mm.flush()
    mm = np.load(tmp_path / "x.npy", mmap_mode="r")
    for method, opts in (("kcenter", {"seed": 3}), ("herding", {}), ("kmeans", {"seed": 3})):
        in_memory = erasus.select(x.astype(dtype).astype(np.float32), 20, method=method, backend="rust", **opts)
        streamed = erasus.select(mm, 20, method=method, block_rows=97, **opts)
        same_selection(in_memory, streamed)
        assert streamed.metadata["backend"] == "torch"


def test_memmap_larger_than_half_the_ram_streams_by_default(tmp_path, monkeypatch):
    x = mixture(600, 4, seed=17)
    np.save(tmp_path / "x.npy", x)
    mm = np.load(tmp_path / "x.npy", mmap_mode="r")
    in_memory = erasus.select(x, 10, method="kcenter", seed=1)
    assert "backend" not in erasus.select(mm, 10, method="kcenter", seed=1).metadata  # Rust while it fits
    monkeypatch.setattr(_torch, "_physical_memory", lambda: 2 * mm.nbytes - 2)
    streamed = erasus.select(mm, 10, method="kcenter", seed=1)
    assert streamed.metadata["backend"] == "torch"
    same_selection(in_memory, streamed)


def test_streamed_blocks_never_hold_the_whole_matrix():
    x = mixture(1000, 4, seed=11)
    seen = []
    rows = _torch.as_rows(x, block_rows=64)
    original = rows.block

    def spy(start, stop):
        seen.append(stop - start)
        return original(start, stop)

    rows.block = spy
    _torch.herding(rows, 5)
    assert max(seen) == 64


needs_faiss = pytest.mark.skipif(importlib.util.find_spec("faiss") is None,
                                 reason="faiss-cpu (the 'select' extra, installed by make test) is not installed")


@needs_faiss
def test_hnsw_graph_recall_against_brute_force():
    x = mixture(3000, 8, seed=12)
    ids, dist = _ann.hnsw_knn_graph(x, 10, threads=1)
    x64 = x.astype(np.float64)
    sq = (x64 * x64).sum(axis=1)
    exact = np.argsort(sq[:, None] + sq[None, :] - 2.0 * x64 @ x64.T, axis=1, kind="stable")[:, :10]
    recall = np.mean([np.intersect1d(ids[i], exact[i]).size / 10 for i in range(3000)])
    assert recall >= 0.9
    assert (ids == np.arange(3000)[:, None]).any(axis=1).all()
    np.testing.assert_array_equal(dist[ids == np.arange(3000)[:, None]], 0.0)
    assert _ann.knn_recall(x, ids, sample=3000) == pytest.approx(recall, abs=2e-3)


@needs_faiss
def test_hnsw_with_a_wide_beam_gives_the_exact_graph_picks():
    x = mixture(1200, 5, seed=13, spread=1.0)  # one connected blob: HNSW with a wide beam finds every neighbour
    exact = erasus.select(x, 30, method="facility_location", neighbors=10, graph="exact")
    approx = erasus.select(x, 30, method="facility_location", neighbors=10, graph="hnsw", ef_search=400)
    assert approx.metadata["graph"] == "hnsw"
    assert approx.metadata["knn_recall"] == 1.0
    same_selection(exact, approx)


@needs_faiss
def test_auto_graph_switches_at_the_threshold():
    x = mixture(900, 5, seed=14)
    below = erasus.select(x, 10, method="facility_location", neighbors=8, graph_threshold=901)
    above = erasus.select(x, 10, method="facility_location", neighbors=8, graph_threshold=900)
    assert below.metadata["graph"] == "exact" and "knn_recall" not in below.metadata
    assert above.metadata["graph"] == "ivf" and 0.9 <= above.metadata["knn_recall"] <= 1.0
    assert 1 <= above.metadata["nprobe"] <= above.metadata["nlist"] == 4  # ceil(900 / 256) cells
    # one objective (exact kNN f) for both sets of picks: the approximate graph loses almost nothing
    assert above.objective == pytest.approx(below.objective, rel=0.01)


def test_bad_input_is_refused_before_any_work():
    x = torch.from_numpy(mixture(50, 3, seed=15))
    bad = x.clone()
    bad[7, 1] = float("nan")
    with pytest.raises(NonFiniteError, match="row 7"):
        erasus.select(bad, 5, method="kcenter", backend="torch")
    with pytest.raises(InvalidInputError, match="block_rows"):
        erasus.select(x, 5, method="herding", block_rows=0)
    with pytest.raises(InvalidInputError, match="backend"):
        erasus.select(x, 5, method="kmeans", backend="cuda")
    with pytest.raises(InvalidInputError, match="exact greedy"):
        erasus.select(x, 5, method="facility_location", optimizer="stochastic", backend="torch")
    with pytest.raises(InvalidInputError, match="neighbors"):
        erasus.get_selector("facility_location", graph="hnsw")
    with pytest.raises(InvalidInputError, match="graph='exact'"):
        erasus.select(x, 5, method="facility_location", neighbors=4, graph="hnsw", backend="torch")
    with pytest.raises(InvalidInputError, match="graph='exact'"):
        erasus.select(x, 5, method="facility_location", neighbors=4, graph="ivf", backend="torch")
    with pytest.raises(InvalidInputError, match="neighbors=K"):
        erasus.get_selector("facility_location", graph="ivf")
    for bad_target in (0.0, 1.5, True, "0.9"):
        with pytest.raises(InvalidInputError, match=r"recall_target must be a number in \(0, 1\]"):
            erasus.get_selector("facility_location", neighbors=4, graph="ivf", recall_target=bad_target)
    with pytest.raises(InvalidInputError, match="nprobe must be >= 1"):
        erasus.get_selector("facility_location", neighbors=4, graph="ivf", nprobe=0)
    with pytest.raises(MemoryBudgetError, match="10000 bytes"):
        erasus.select(x, 5, method="facility_location", max_dense_bytes=9999, backend="torch")
    with pytest.raises(InvalidInputError, match="exceeds"):
        erasus.select(x, 51, method="kcenter", backend="torch")
    with pytest.raises(InvalidInputError, match="2-D"):
        erasus.select(x[0], 1, method="kcenter", backend="torch")


@pytest.mark.gpu
@pytest.mark.parametrize("method,opts", [("kcenter", {}), ("herding", {}), ("kmeans", {}),
                                         ("facility_location", {}), ("facility_location", {"neighbors": 10})])
def test_cuda_tensor_is_selected_on_the_device(method, opts):
    x = mixture(2000, 16, seed=16)
    rust = erasus.select(x, 30, method=method, backend="rust", **opts)
    cuda = erasus.select(torch.from_numpy(x).cuda(), 30, method=method, **opts)
    assert cuda.metadata["backend"] == "torch"
    same_selection(rust, cuda, rtol=1e-4)


def exact_knn_objective(x, neighbors, picks):
    """Facility location on the exact kNN graph in float64 brute force: ``sum_i max_{j in S cap N_K(i)}
    (D_max - D_ij)`` with ``D_max`` the graph's largest distance (the craig similarity of the sparse mode)."""
    x64 = x.astype(np.float64)
    sq = (x64 * x64).sum(axis=1)
    ids = np.empty((len(x), neighbors), dtype=np.int64)
    dist = np.empty((len(x), neighbors))
    for s in range(0, len(x), 1000):
        d2 = np.maximum(sq[s:s + 1000, None] + sq[None, :] - 2.0 * x64[s:s + 1000] @ x64.T, 0.0)
        near = np.argpartition(d2, neighbors - 1, axis=1)[:, :neighbors]
        near_d2 = np.take_along_axis(d2, near, axis=1)
        order = np.argsort(near_d2, axis=1, kind="stable")
        ids[s:s + 1000] = np.take_along_axis(near, order, axis=1)
        dist[s:s + 1000] = np.sqrt(np.take_along_axis(near_d2, order, axis=1))
    chosen = np.zeros(len(x), bool)
    chosen[picks] = True
    return float(np.where(chosen[ids], dist.max() - dist, 0.0).max(axis=1).sum()), ids


@needs_faiss
def test_hnsw_graph_picks_are_within_one_percent_of_the_exact_graph_picks():
    # The 10^5-subsample check at test size: a genuinely approximate graph (recall < 1) may change the picks,
    # but their facility-location value on the exact graph stays within 1% of the exact-graph greedy's.
    x = mixture(5000, 32, seed=16, clusters=20)
    before = erasus.get_num_threads()
    erasus.set_num_threads(1)  # faiss builds the HNSW graph on the Rust pool's thread count: one thread, one graph
    try:
        exact = erasus.select(x, 200, method="facility_location", neighbors=20, graph="exact")
        approx = erasus.select(x, 200, method="facility_location", neighbors=20, graph="hnsw", ef_search=24)
    finally:
        erasus.set_num_threads(before)
    f_exact, ids = exact_knn_objective(x, 20, exact.indices)
    f_approx, _ = exact_knn_objective(x, 20, approx.indices)
    hnsw_ids, _ = _ann.hnsw_knn_graph(x, 20, ef_search=24, threads=1)
    recall = np.mean([np.intersect1d(a, e).size for a, e in zip(hnsw_ids, ids)]) / 20
    assert 0.8 <= recall < 1.0
    assert approx.metadata["knn_recall"] == pytest.approx(recall, abs=0.03)  # 1000 sampled rows vs all 5000
    assert exact.objective == pytest.approx(f_exact, rel=1e-5)
    assert f_approx >= 0.99 * f_exact


def brute_knn(x, neighbors):
    """Exact neighbour ids and distances in float64 (ties broken by row id)."""
    x64 = x.astype(np.float64)
    sq = (x64 * x64).sum(axis=1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * x64 @ x64.T, 0.0)
    ids = np.argsort(d2, axis=1, kind="stable")[:, :neighbors]
    return ids, np.sqrt(np.take_along_axis(d2, ids, axis=1))


@needs_faiss
def test_ivf_graph_reaches_its_recall_target_against_brute_force():
    x = mixture(3000, 8, seed=21)
    ids, dist, info = _ann.ivf_knn_graph(x, 10, recall_target=0.9, threads=1, seed=3)
    exact, exact_d = brute_knn(x, 10)
    recall = np.mean([np.intersect1d(a, e).size for a, e in zip(ids, exact)]) / 10
    assert info["nlist"] == 12 and 1 <= info["nprobe"] < 12  # ceil(3000 / 256) cells, not all of them searched
    assert info["calibration_recall"] >= 0.9
    assert recall >= 0.87  # calibrated on 500 rows: the recall over all 3000 is within sampling error of the target
    assert (ids == np.arange(3000)[:, None]).any(axis=1).all()
    np.testing.assert_array_equal(dist[ids == np.arange(3000)[:, None]], 0.0)
    found = ids == exact  # where a neighbour is the exact one at its rank, its distance is the exact distance
    np.testing.assert_allclose(dist[found], exact_d[found], rtol=1e-4, atol=1e-3)
    assert _ann.knn_recall(x, ids, sample=3000) == pytest.approx(recall, abs=2e-3)


@needs_faiss
def test_ivf_searching_every_cell_is_the_exact_graph():
    x = mixture(2000, 6, seed=22, spread=2.0)
    ids, dist, info = _ann.ivf_knn_graph(x, 12, nprobe=10_000, threads=1)
    exact, exact_d = brute_knn(x, 12)
    assert info["nprobe"] == info["nlist"] == 8 and "calibration_recall" not in info
    np.testing.assert_allclose(np.sort(dist, axis=1), exact_d, rtol=1e-4, atol=1e-3)
    assert np.mean([np.intersect1d(a, e).size for a, e in zip(ids, exact)]) / 12 > 0.999
    every = erasus.select(x, 40, method="facility_location", neighbors=12, graph="ivf", nprobe=8)
    assert every.metadata["knn_recall"] == 1.0 and every.metadata["nprobe"] == 8
    f_every, _ = exact_knn_objective(x, 12, every.indices)
    f_exact, _ = exact_knn_objective(x, 12, erasus.select(x, 40, method="facility_location", neighbors=12,
                                                           graph="exact").indices)
    assert f_every == pytest.approx(f_exact, rel=1e-6)


@needs_faiss
def test_ivf_graph_picks_are_within_one_percent_of_the_exact_graph_picks_and_repeat():
    x = mixture(5000, 32, seed=16, clusters=20)
    exact = erasus.select(x, 200, method="facility_location", neighbors=20, graph="exact")
    approx = erasus.select(x, 200, method="facility_location", neighbors=20, graph="ivf", recall_target=0.9)
    again = erasus.select(x, 200, method="facility_location", neighbors=20, graph="ivf", recall_target=0.9)
    f_exact, _ = exact_knn_objective(x, 20, exact.indices)
    f_approx, _ = exact_knn_objective(x, 20, approx.indices)
    assert 0.87 <= approx.metadata["knn_recall"] < 1.0 and approx.metadata["nprobe"] < approx.metadata["nlist"]
    assert f_approx >= 0.99 * f_exact
    same_selection(approx, again)  # k-means seeded, exact distances within the cells: the same graph every run
