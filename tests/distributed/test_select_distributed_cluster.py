"""select_distributed on a simulated two-node Ray cluster (``ray.cluster_utils.Cluster`` on loopback): the
partition tasks spread over both nodes and the same seed gives the same selection every time."""

from __future__ import annotations

import numpy as np
import pytest
import ray
from ray.cluster_utils import Cluster

from dist_reference import blobs, two_rounds_by_hand
from erasus.distributed import select_distributed


@pytest.fixture(scope="module")
def two_nodes():
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False, configure_logging=False)
    yield cluster
    ray.shutdown()
    cluster.shutdown()


def test_same_selection_on_two_nodes_every_time(two_nodes, tmp_path):
    assert len([n for n in ray.nodes() if n["Alive"]]) == 2
    x = blobs(800, 5, seed=4)
    paths = []
    for p in range(4):
        paths.append(str(tmp_path / f"part{p}.npy"))
        np.save(paths[-1], x[p * 200:(p + 1) * 200])
    ids, value, counts = two_rounds_by_hand(x, 16, "facility_location", 4, seed=7)
    for _ in range(2):
        sel = select_distributed(paths, 16, "facility_location", seed=7, progress=False)
        np.testing.assert_array_equal(sel.indices, ids)
        np.testing.assert_array_equal(sel.weights, counts)
        assert sel.objective == pytest.approx(value, rel=1e-9)
    kc = select_distributed(x, 16, "kcenter", partitions=4, seed=7, progress=False)
    kc_ids, kc_value, _ = two_rounds_by_hand(x, 16, "kcenter", 4, seed=7)
    np.testing.assert_array_equal(kc.indices, kc_ids)
    assert kc.objective == pytest.approx(kc_value, rel=1e-9)
