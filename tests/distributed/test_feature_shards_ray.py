"""extract_feature_shards: Ray Data map_batches actors write .npy shards equal to the single-process
embeddings / projected per-sample gradients, and select_distributed reads them back."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import ray
import torch

import erasus
from dist_reference import two_rounds_by_hand
from erasus.distributed import extract_feature_shards, select_distributed
from erasus.errors import InvalidInputError


@pytest.fixture(scope="module")
def local_ray():
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield
    ray.shutdown()


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))


def _data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(90, 5)).astype(np.float32), rng.integers(0, 3, size=90).astype(np.int64)


def test_shards_equal_single_process_features_and_select(local_ray, tmp_path):
    x, y = _data()
    ds = ray.data.from_items([{"x": x[i], "y": y[i]} for i in range(len(x))]).repartition(4)
    torch.save(_model(), tmp_path / "model.pt")
    # a callable that loads the model inside each actor (how a large model is shipped)
    load = functools.partial(torch.load, str(tmp_path / "model.pt"), weights_only=False)
    paths = extract_feature_shards(ds, load, tmp_path / "emb", shards=3, batch_size=16)
    got = np.concatenate([np.load(p) for p in paths])
    ref = erasus.features.embeddings(_model(), (torch.from_numpy(x), torch.from_numpy(y)), progress=False).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)
    assert [len(np.load(p)) for p in paths] == [30, 30, 30]
    sel = select_distributed(paths, 8, "craig", seed=0, progress=False)
    ids, _, counts = two_rounds_by_hand(ref, 8, "craig", 3, seed=0)
    np.testing.assert_array_equal(sel.indices, ids)
    assert sel.weights.sum() == 90

    paths = extract_feature_shards(ds, _model(), tmp_path / "grad", shards=2, kind="gradients", label_column="y",
                                   batch_size=32, proj_dim=16, seed=3)
    got = np.concatenate([np.load(p) for p in paths])
    ref = erasus.features.per_sample_gradients(_model(), (torch.from_numpy(x), torch.from_numpy(y)), proj_dim=16,
                                               seed=3, progress=False).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-6)


def _first_block_slow():
    """A map_batches function whose first block finishes last (defined in a closure so Ray ships it by value:
    the workers cannot import this test module)."""

    def slow(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import time

        if batch["i"][0] == 0:  # Ray Data's completion order is then not row order
            time.sleep(1.0)
        return {"x": batch["x"], "y": batch["y"]}

    return slow


def test_shards_keep_dataset_order_when_blocks_finish_out_of_order(local_ray, tmp_path):
    """Regression for the intermittent CI failure (2026-12-01): the caller's dataset was created with
    preserve_order off and its context is its own copy; shard p must still hold rows [p n / 3, (p + 1) n / 3)."""
    x, y = _data()
    items = [{"i": i, "x": x[i], "y": y[i]} for i in range(len(x))]
    ds = ray.data.from_items(items, override_num_blocks=6).map_batches(_first_block_slow(), batch_size=None)
    paths = extract_feature_shards(ds, _model(), tmp_path / "grad", shards=3, kind="gradients", label_column="y",
                                   batch_size=15, proj_dim=8, seed=1, concurrency=2)
    got = np.concatenate([np.load(p) for p in paths])
    ref = erasus.features.per_sample_gradients(_model(), (torch.from_numpy(x), torch.from_numpy(y)), proj_dim=8,
                                               seed=1, progress=False).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-6)
    assert not ds.context.execution_options.preserve_order


def test_bad_arguments(local_ray, tmp_path):
    ds = ray.data.from_items([{"x": np.zeros(5, np.float32)}])
    with pytest.raises(InvalidInputError, match="label_column"):
        extract_feature_shards(ds, _model(), tmp_path, shards=1, kind="gradients")
    with pytest.raises(InvalidInputError, match="not in the dataset's columns"):
        extract_feature_shards(ds, _model(), tmp_path, shards=1, column="img")
