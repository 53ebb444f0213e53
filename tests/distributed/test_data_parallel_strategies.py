"""General gradient strategies under a 2-process gloo group, each rank unlearning its half of forget / retain:
the replicas end identical and equal to one float64 process on all rows (GA and GradDiff written out by hand,
SCRUB's schedule run by erasus in one process); SalUn's mask is the one of the whole forget set; strategies
that cannot run data-parallel, and until=, are refused before any work."""

from __future__ import annotations

import socket

import pytest
import torch
import torch.multiprocessing as mp

from data_parallel_workers import RUNS, STEPS, data, hand_reference, mlp, worker
from erasus.registry import get_strategy


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    if not torch.distributed.is_available():
        pytest.skip("torch.distributed is not available")
    workdir = tmp_path_factory.mktemp("data_parallel")
    mp.spawn(worker, args=(2, _free_port(), str(workdir)), nprocs=2, join=True)
    return [torch.load(workdir / f"rank{r}.pt") for r in range(2)]


@pytest.mark.parametrize("name", sorted(RUNS))
def test_two_processes_equal_one_process_on_all_rows(ranks, name):
    start = mlp(seed=100)  # rank 0's starting weights; rank 1 was seeded differently
    if name == "scrub":
        xf, yf, xr, yr = data()
        opts = {**RUNS[name], "batch_size": 2 * RUNS[name]["batch_size"]}
        reference = get_strategy(name, **opts).unlearn(
            model=start, forget_data=torch.utils.data.TensorDataset(xf, yf),
            retain_data=torch.utils.data.TensorDataset(xr, yr), steps=STEPS, progress=False).state_dict()
    else:
        reference = hand_reference(name, start)
    for key, value in reference.items():
        torch.testing.assert_close(ranks[0][name][key], ranks[1][name][key], rtol=0, atol=0)
        torch.testing.assert_close(ranks[0][name][key], value, rtol=1e-10, atol=1e-12, msg=f"{name}: {key}")
    assert any(not torch.equal(ranks[0][name][k], v) for k, v in start.state_dict().items())


def test_replicas_keep_rank0_buffers(ranks):
    """BatchNorm running statistics follow DDP's broadcast_buffers: rank 0's on every replica."""
    for key, value in ranks[0]["batchnorm"].items():
        torch.testing.assert_close(ranks[1]["batchnorm"][key], value, rtol=0, atol=0, msg=key)
    assert not torch.equal(ranks[0]["batchnorm"]["1.running_mean"], torch.zeros(8, dtype=torch.float64))


def test_salun_mask_is_the_whole_forget_sets(ranks):
    """The mask from the gradient of the mean CE over all 16 rows (autograd, float64), top 30% of |g|."""
    xf, yf, _, _ = data()
    model = mlp(seed=100)
    grads = torch.autograd.grad(torch.nn.functional.cross_entropy(model(xf), yf), list(model.parameters()))
    flat = torch.cat([g.abs().reshape(-1) for g in grads])
    threshold = torch.sort(flat, descending=True).values[round(0.3 * flat.numel()) - 1]
    for r in ranks:
        for got, g in zip(r["mask"], grads):
            torch.testing.assert_close(got, (g.abs() >= threshold).to(g.dtype), rtol=0, atol=0)


def test_refused_before_work_under_a_process_group(ranks):
    for r in ranks:
        fisher, until = r["refusals"]
        assert "fisher_forgetting" in fisher and "one process" in fisher
        assert "until=" in until and "steps=" in until
        assert r["untouched"]
