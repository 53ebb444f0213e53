"""Workers and float64 references for tests/distributed/test_data_parallel_strategies.py: a tiny float64 MLP
classifier unlearned by 2 gloo processes, each on its half of forget / retain, against one process on all rows."""

from __future__ import annotations

import os

import torch

N, D, C = 16, 5, 3
#: one full-shard batch per step (8 rows per rank, 16 in one process): the mean of the two shard means is the
#: full-batch mean, so the data-parallel update equals the single-process one
SHARD = N // 2
RUNS = {
    "gradient_ascent": {"lr": 0.2, "momentum": 0.9, "batch_size": SHARD},
    "grad_diff": {"lr": 0.2, "momentum": 0.9, "batch_size": SHARD, "alpha": 0.5},
    "scrub": {"lr": 0.2, "momentum": 0.9, "batch_size": SHARD, "msteps": 1, "temperature": 2.0},
}
STEPS = 3


def data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    xf, xr = torch.randn(N, D, generator=g, dtype=torch.float64), torch.randn(N, D, generator=g, dtype=torch.float64)
    yf, yr = torch.randint(0, C, (N,), generator=g), torch.randint(0, C, (N,), generator=g)
    return xf, yf, xr, yr


def mlp(seed: int, *, batchnorm: bool = False) -> torch.nn.Module:
    torch.manual_seed(seed)
    layers = [torch.nn.Linear(D, 8), *([torch.nn.BatchNorm1d(8)] if batchnorm else []), torch.nn.Tanh(),
              torch.nn.Linear(8, C)]
    return torch.nn.Sequential(*layers).double()


def shard(rank: int, world: int, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return tuple(t[rank::world] for t in tensors)


def hand_reference(name: str, model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """GA / GradDiff written out: full-batch loss on all 16 rows, SGD with momentum
    ``b <- mu b + g`` (``b = g`` at the first step), ``theta <- theta - lr b``, in float64."""
    xf, yf, xr, yr = data()
    opts = RUNS[name]
    params = [p.detach().clone().requires_grad_(True) for p in model.parameters()]
    bufs: list[torch.Tensor | None] = [None] * len(params)

    def forward(x: torch.Tensor) -> torch.Tensor:
        w1, b1, w2, b2 = params
        return torch.tanh(x @ w1.T + b1) @ w2.T + b2

    for _ in range(STEPS):
        loss = -torch.nn.functional.cross_entropy(forward(xf), yf)
        if name == "grad_diff":
            loss = loss + opts["alpha"] * torch.nn.functional.cross_entropy(forward(xr), yr)
        grads = torch.autograd.grad(loss, params)
        with torch.no_grad():
            for i, (p, g) in enumerate(zip(params, grads)):
                bufs[i] = g.clone() if bufs[i] is None else opts["momentum"] * bufs[i] + g
                p -= opts["lr"] * bufs[i]
    return {k: p.detach() for k, p in zip(model.state_dict(), params)}


def worker(rank: int, world: int, port: int, workdir: str) -> None:
    """One gloo process: every strategy of RUNS on this rank's shards, from a model seeded differently on each
    rank (the run must start from rank 0's weights); SalUn's saliency mask; the refusals."""
    import torch.distributed as dist

    from erasus.errors import InvalidInputError
    from erasus.registry import get_strategy
    from erasus.strategies.base import Run
    from erasus.strategies.salun import saliency_mask
    from erasus.distributed.data_parallel import Replicas
    from erasus.tasks import get_task

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    out: dict[str, object] = {}
    try:
        xf, yf, xr, yr = shard(rank, world, *data())
        forget, retain = torch.utils.data.TensorDataset(xf, yf), torch.utils.data.TensorDataset(xr, yr)
        for name, opts in RUNS.items():
            model = mlp(seed=100 + rank)
            result = get_strategy(name, **opts).unlearn(model=model, forget_data=forget, retain_data=retain,
                                                        steps=STEPS, progress=False)
            out[name] = result.state_dict()
        bn = get_strategy("gradient_ascent", **RUNS["gradient_ascent"]).unlearn(
            model=mlp(seed=100 + rank, batchnorm=True), forget_data=forget, steps=STEPS, progress=False)
        out["batchnorm"] = bn.state_dict()

        model = mlp(seed=100)
        run = Run(task=get_task("classification"), forget=forget, retain=None, weights=None, steps=1, epochs=None,
                  lr=0.1, device=torch.device("cpu"), seed=0, progress=False, batch_size=3, optimizer="sgd",
                  momentum=0.0, weight_decay=0.0, original=model, strategy_name="salun", replicas=Replicas(model))
        out["mask"] = saliency_mask(model, run, ratio=0.3)

        model = mlp(seed=100)
        before = {k: v.clone() for k, v in model.state_dict().items()}
        refusals = []
        for call in (lambda: get_strategy("fisher_forgetting").unlearn(model=model, forget_data=forget,
                                                                     retain_data=retain, progress=False),
                     lambda: get_strategy("gradient_ascent").unlearn(model=model, forget_data=forget, steps=2,
                                                                   until={"metric": "forget_accuracy", "below": 0.1},
                                                                   progress=False, inplace=True)):
            try:
                call()
                refusals.append("")
            except InvalidInputError as exc:
                refusals.append(str(exc))
        out["refusals"] = refusals
        out["untouched"] = all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
        torch.save(out, os.path.join(workdir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()
