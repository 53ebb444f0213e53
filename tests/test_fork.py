"""The Rust thread pool survives fork(): a forked child (a DataLoader worker) can still select."""

import multiprocessing as mp
import sys

import numpy as np
import pytest

import erasus

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="fork() only")


def _child(q):
    x = np.random.default_rng(1).normal(size=(2000, 16)).astype(np.float32)
    q.put(erasus.select(x, 20, method="kcenter", seed=0).indices.tolist())


def test_select_in_forked_child_after_parent_used_the_pool():
    x = np.random.default_rng(1).normal(size=(2000, 16)).astype(np.float32)
    expected = erasus.select(x, 20, method="kcenter", seed=0).indices.tolist()  # parent starts the pool
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_child, args=(q,))
    p.start()
    p.join(timeout=120)
    assert p.exitcode == 0, "forked child failed or hung"
    assert q.get(timeout=5) == expected


def test_thread_count_setting():
    before = erasus.get_num_threads()
    try:
        erasus.set_num_threads(1)
        assert erasus.get_num_threads() == 1
    finally:
        erasus.set_num_threads(0)
    assert erasus.get_num_threads() == before
