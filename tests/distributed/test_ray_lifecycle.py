"""select_distributed leaves Ray as it found it: a Ray it started itself is shut down (no raylet / GCS
processes left behind), a Ray the caller started keeps running."""

from __future__ import annotations

import time

import numpy as np
import psutil
import ray

from dist_reference import blobs, two_rounds_by_hand
from erasus.distributed import select_distributed

X = blobs(200, 4, seed=3)


def _ray_children() -> list[str]:
    names = []
    for child in psutil.Process().children(recursive=True):
        try:
            if child.status() != psutil.STATUS_ZOMBIE and ("raylet" in child.name() or "gcs_server" in child.name()):
                names.append(child.name())
        except psutil.NoSuchProcess:
            pass
    return names


def test_a_ray_started_by_the_call_is_shut_down():
    assert not ray.is_initialized(), "a Ray from another test module is still running (a leak)"
    sel = select_distributed(X, 6, "craig", partitions=2, seed=1, progress=False)
    ids, _, _ = two_rounds_by_hand(X, 6, "craig", 2, seed=1)
    np.testing.assert_array_equal(sel.indices, ids)
    assert not ray.is_initialized()
    deadline = time.monotonic() + 20
    while _ray_children() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _ray_children() == []


def test_a_ray_started_by_the_caller_keeps_running():
    assert not ray.is_initialized(), "a Ray from another test module is still running (a leak)"
    ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        select_distributed(X, 6, "kcenter", partitions=2, seed=1, progress=False)
        assert ray.is_initialized()
        assert ray.get(ray.remote(lambda: 7).remote()) == 7
    finally:
        ray.shutdown()
