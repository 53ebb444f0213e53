"""select_distributed on a local Ray (``ray.init(num_cpus=2)`` on loopback, one per module): equals the two
rounds run by hand with the single-machine selector, from arrays, .npy shards and Ray Datasets."""

from __future__ import annotations

import numpy as np
import pytest
import ray

import erasus
from dist_reference import blobs, bounds, brute_score, brute_submodular, two_rounds_by_hand
from erasus.distributed import select_distributed
from erasus.errors import InvalidInputError


@pytest.fixture(scope="module")
def local_ray():
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield
    ray.shutdown()


X = blobs(600, 6, seed=1)


@pytest.mark.parametrize(
    ("method", "opts"),
    [("facility_location", {}), ("craig", {"similarity": "cosine"}), ("kcenter", {}),
     ("kcenter", {"metric": "cosine"}), ("facility_location", {"similarity": "rbf"})],
)
def test_equals_two_rounds_by_hand(local_ray, method, opts):
    sel = select_distributed(X, 15, method, partitions=4, seed=3, progress=False, **opts)
    ids, value, counts = two_rounds_by_hand(X, 15, method, 4, seed=3, **opts)
    np.testing.assert_array_equal(sel.indices, ids)
    assert sel.objective == pytest.approx(value, rel=1e-9)
    if method == "kcenter":
        np.testing.assert_array_equal(sel.weights, np.ones(15))
    else:
        np.testing.assert_array_equal(sel.weights, counts)
        assert sel.weights.sum() == len(X)
    assert sel.method == method and sel.metadata["partitions"] == 4
    again = select_distributed(X, 15, method, partitions=4, seed=3, progress=False, **opts)
    np.testing.assert_array_equal(again.indices, sel.indices)


SUBMODULAR_CASES = [
    ("graph_cut", {}), ("graph_cut", {"similarity": "cosine", "optimizer": "naive", "lambda_": 0.3}),
    ("saturated_coverage", {}), ("saturated_coverage", {"alpha": 0.3}), ("sum_redundancy", {}),
    ("feature_based", {"concave": "log"}), ("log_determinant", {"reg": 0.5}),
]


@pytest.mark.parametrize(("function", "opts"), SUBMODULAR_CASES)
def test_submodular_greedi_against_single_machine_greedy(local_ray, function, opts):
    """GreeDi for the Rust core's other submodular functions: the same picks as the two rounds run by hand with
    the single-machine selector, the objective equal to f over all rows from its definition (float64 brute
    force), and within 20% of the single-machine greedy's f on all rows (m = 4, k = 15, n = 600)."""
    x = np.abs(X) if function == "feature_based" else X  # feature_based needs non-negative features
    sel = select_distributed(x, 15, "submodular", partitions=4, seed=2, progress=False, function=function, **opts)
    ids, value, _ = two_rounds_by_hand(x, 15, "submodular", 4, seed=2, function=function, **opts)
    np.testing.assert_array_equal(sel.indices, ids)
    params = {k: v for k, v in opts.items() if k != "optimizer"}
    assert sel.objective == pytest.approx(brute_submodular(x, sel.indices, function, **params), rel=1e-9)
    assert sel.objective == pytest.approx(value, rel=1e-9)
    np.testing.assert_array_equal(sel.weights, np.ones(15))
    single = erasus.select(x, 15, "submodular", function=function, seed=2, **opts)
    assert single.objective == pytest.approx(brute_submodular(x, single.indices, function, **params), rel=1e-4)
    assert sel.objective >= 0.8 * brute_submodular(x, single.indices, function, **params)


def test_submodular_refusals(local_ray):
    with pytest.raises(InvalidInputError, match="supermodular"):
        select_distributed(X, 5, "submodular", partitions=2, function="disparity_sum", optimizer="naive",
                           progress=False)
    with pytest.raises(InvalidInputError, match="D_max"):
        select_distributed(X, 5, "submodular", partitions=2, function="graph_cut", similarity="craig", progress=False)


def test_facility_objective_close_to_single_machine_greedy(local_ray):
    """f = n D_max - cost with D_max the largest pairwise distance (brute force): GreeDi within 2% of the
    centralized lazy greedy's f, and the single-machine objective agrees with that identity."""
    single = erasus.select(X, 20, "facility_location", seed=0)
    dmax = max(np.sqrt(((X[i] - X) ** 2).sum(axis=1).astype(np.float64)).max() for i in range(len(X)))
    single_cost, _ = brute_score(X, single.indices, "facility_location")
    assert single.objective == pytest.approx(len(X) * dmax - single_cost, rel=1e-4)
    dist = select_distributed(X, 20, "facility_location", partitions=4, seed=0, progress=False)
    assert len(X) * dmax - dist.objective >= 0.98 * single.objective
    kc_single = erasus.select(X, 20, "kcenter", seed=0)
    kc = select_distributed(X, 20, "kcenter", partitions=4, seed=0, progress=False)
    assert kc.objective <= 2.0 * kc_single.objective  # 4-approx vs 2-approx of the same optimum


def test_npy_shards_and_shuffle_map_to_global_rows(local_ray, tmp_path):
    paths = []
    for p, (lo, hi) in enumerate(bounds(len(X), 3)):
        paths.append(str(tmp_path / f"shard{p}.npy"))
        np.save(paths[-1], X[lo:hi])
    from_disk = select_distributed(paths, 12, "craig", seed=0, progress=False)
    from_array = select_distributed(X, 12, "craig", partitions=3, seed=0, progress=False)
    np.testing.assert_array_equal(from_disk.indices, from_array.indices)
    np.testing.assert_array_equal(from_disk.weights, from_array.weights)
    ids, _, _ = two_rounds_by_hand(X, 12, "craig", 3, seed=0)
    np.testing.assert_array_equal(from_disk.indices, ids)
    # a seeded random partition: the same as splitting the permuted rows by hand, reported in original rows
    perm = np.random.default_rng(5).permutation(len(X))
    shuffled = select_distributed(X, 12, "kcenter", partitions=3, seed=5, shuffle=True, progress=False)
    ids, value, _ = two_rounds_by_hand(X[perm], 12, "kcenter", 3, seed=5)
    np.testing.assert_array_equal(shuffled.indices, perm[ids])
    assert shuffled.objective == pytest.approx(value, rel=1e-9)


@pytest.mark.parametrize("method", ["kcenter", "facility_location"])
def test_merged_only_scoring(local_ray, method):
    """score_locals=False returns the round-2 solution (Malkomes et al. as published), scored on all rows."""
    sel = select_distributed(X, 10, method, partitions=4, seed=1, score_locals=False, progress=False)
    ids, value, _ = two_rounds_by_hand(X, 10, method, 4, seed=1, score_locals=False)
    np.testing.assert_array_equal(sel.indices, ids)
    assert sel.objective == pytest.approx(value, rel=1e-9)
    assert sel.metadata["winner"] == "merged" and len(sel.metadata["candidate_objectives"]) == 1


def test_ray_dataset_source(local_ray):
    ds = ray.data.from_numpy(X).repartition(5)
    sel = select_distributed(ds, 10, "facility_location", partitions=4, seed=0, progress=False)
    ids, _, counts = two_rounds_by_hand(X, 10, "facility_location", 4, seed=0)
    np.testing.assert_array_equal(sel.indices, ids)
    np.testing.assert_array_equal(sel.weights, counts)


def _first_block_slow():
    """A map_batches function whose first block finishes last (defined in a closure so Ray ships it by value:
    the workers cannot import this test module)."""

    def slow(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import time

        if batch["i"][0] == 0:  # Ray Data's completion order is then not row order
            time.sleep(1.0)
        return {"data": batch["data"]}

    return slow


def test_ray_dataset_rows_keep_dataset_order_when_blocks_finish_out_of_order(local_ray):
    """Regression (clean-clone CI 2026-12-01): a Dataset keeps the DataContext copied at its creation, so the
    order flag has to be set on its own context; here the first block is the slowest and must stay rows 0.."""
    ctx = ray.data.DataContext.get_current()
    assert not ctx.execution_options.preserve_order  # the default the caller's dataset is created under
    items = [{"i": i, "data": X[i]} for i in range(len(X))]
    ds = ray.data.from_items(items, override_num_blocks=6).map_batches(_first_block_slow(), batch_size=None)
    sel = select_distributed(ds, 10, "kcenter", partitions=3, seed=0, progress=False)
    ids, value, _ = two_rounds_by_hand(X, 10, "kcenter", 3, seed=0)
    np.testing.assert_array_equal(sel.indices, ids)
    assert sel.objective == pytest.approx(value, rel=1e-9)
    assert not ds.context.execution_options.preserve_order and not ctx.execution_options.preserve_order


def test_bad_input_is_refused_before_work(local_ray, tmp_path):
    with pytest.raises(InvalidInputError, match="exceeds the number of samples"):
        select_distributed(X, 601, "kcenter", partitions=2, progress=False)
    with pytest.raises(InvalidInputError, match="supports methods"):
        select_distributed(X, 5, "herding", partitions=2, progress=False)
    with pytest.raises(InvalidInputError, match="unknown similarity"):
        select_distributed(X, 5, "facility_location", partitions=2, similarity="nope", progress=False)
    with pytest.raises(InvalidInputError, match="does not exist"):
        select_distributed([str(tmp_path / "missing.npy")], 5, "kcenter", progress=False)
    with pytest.raises(InvalidInputError, match="partitions = 3 but source holds 1"):
        select_distributed([X], 5, "kcenter", partitions=3, progress=False)
    with pytest.raises(InvalidInputError, match="partitions = 700 exceeds"):
        select_distributed(X, 5, "kcenter", partitions=700, progress=False)
    bad = X.copy()
    bad[450, 2] = np.nan
    np.save(tmp_path / "nan.npy", bad[300:])
    np.save(tmp_path / "ok.npy", bad[:300])
    with pytest.raises(InvalidInputError, match="nan.npy"):
        select_distributed([str(tmp_path / "ok.npy"), str(tmp_path / "nan.npy")], 5, "kcenter", progress=False)
