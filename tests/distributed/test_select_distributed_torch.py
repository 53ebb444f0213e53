"""select_distributed(backend="torch"): two CPU processes on gloo, each rank a partition, return the same
selection on both ranks, equal to the two rounds run by hand with the single-machine selector."""

from __future__ import annotations

import socket

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from dist_reference import blobs, brute_submodular, torch_rank_worker, two_rounds_by_hand
from erasus.distributed import select_distributed
from erasus.errors import InvalidInputError


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("method", ["craig", "kcenter"])
def test_two_gloo_ranks_equal_two_rounds_by_hand(tmp_path, method):
    if not torch.distributed.is_available():
        pytest.skip("torch.distributed is not available")
    mp.spawn(torch_rank_worker, args=(2, _free_port(), str(tmp_path), method, 9), nprocs=2, join=True)
    ranks = [np.load(tmp_path / f"{method}{r}.npz") for r in range(2)]
    ids, value, counts = two_rounds_by_hand(blobs(600, 6, seed=1), 9, method, 2, seed=2)
    for res in ranks:
        np.testing.assert_array_equal(res["indices"], ids)
        assert float(res["objective"]) == pytest.approx(value, rel=1e-9)
    if method == "craig":
        np.testing.assert_array_equal(ranks[0]["weights"], counts)
        assert ranks[0]["weights"].sum() == 600


def test_two_gloo_ranks_saturated_coverage(tmp_path):
    """method="submodular": the saturation caps need every row against every rank's rows (broadcast in turn)."""
    opts = {"function": "saturated_coverage", "alpha": 0.2}
    mp.spawn(torch_rank_worker, args=(2, _free_port(), str(tmp_path), "submodular", 9, opts), nprocs=2, join=True)
    x = blobs(600, 6, seed=1)
    ids, value, _ = two_rounds_by_hand(x, 9, "submodular", 2, seed=2, **opts)
    for r in range(2):
        res = np.load(tmp_path / f"submodular{r}.npz")
        np.testing.assert_array_equal(res["indices"], ids)
        assert float(res["objective"]) == pytest.approx(brute_submodular(x, ids, **opts), rel=1e-9)
        assert float(res["objective"]) == pytest.approx(value, rel=1e-9)


def test_torch_backend_needs_a_process_group():
    with pytest.raises(InvalidInputError, match="initialized torch.distributed"):
        select_distributed(np.ones((4, 2), np.float32), 2, "kcenter", backend="torch")
