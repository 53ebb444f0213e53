"""Synchronous data parallelism for a plain (unwrapped) model under an initialized ``torch.distributed`` group.

Each process holds a replica and its own shard of the data; :class:`Replicas` keeps the replicas identical the
way ``DistributedDataParallel`` does (torch ``nn/parallel/distributed.py``): the parameters and buffers of rank 0
are broadcast once before training, every step's gradients are averaged over the processes between
``backward`` and ``optimizer.step`` (so each rank's loss is its local mean and the update is that of the mean over
all shards when the per-rank batches are equally large), and the buffers are broadcast from rank 0 after each
step (DDP's ``broadcast_buffers=True``: BatchNorm running statistics are rank 0's). Models wrapped in DDP / FSDP2
sync in their own backward and get none of this.

Unlike DDP it all-reduces after ``backward`` in one flattened buffer per dtype instead of overlapping buckets with
the backward pass: erasus' strategies call the model through task adapters and read its attributes, which a DDP
wrapper would hide.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

__all__ = ["Replicas", "world_size"]


def world_size() -> int:
    """The size of the default process group (1 when torch.distributed is unavailable or uninitialized)."""
    dist = torch.distributed
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _coalesced(tensors: list[torch.Tensor], op: str) -> None:
    """``all_reduce`` (``op="sum"``) or ``broadcast`` from rank 0 (``op="broadcast"``) of ``tensors`` in place,
    one collective per (device, dtype) group."""
    dist = torch.distributed
    groups: dict[tuple[torch.device, torch.dtype], list[torch.Tensor]] = {}
    for t in tensors:
        groups.setdefault((t.device, t.dtype), []).append(t)
    for group in groups.values():
        flat = torch.cat([t.detach().reshape(-1) for t in group])
        if op == "sum":
            dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        else:
            dist.broadcast(flat, src=0)
        offset = 0
        with torch.no_grad():
            for t in group:
                t.copy_(flat[offset:offset + t.numel()].view_as(t))
                offset += t.numel()


def all_reduce_sum_(tensors: Iterable[torch.Tensor]) -> None:
    """Sum ``tensors`` over the processes, in place (a no-op in a single process)."""
    ts = list(tensors)
    if world_size() > 1 and ts:
        _coalesced(ts, "sum")


class Replicas:
    """The replica of ``model`` on this process; build it only when :func:`world_size` > 1. ``start=False`` for a
    model whose wrapper (DDP, FSDP2) already broadcast its starting state."""

    def __init__(self, model: torch.nn.Module, *, start: bool = True) -> None:
        self.world = world_size()
        if start:
            self.broadcast(model, buffers_only=False)

    @staticmethod
    def broadcast(model: torch.nn.Module, *, buffers_only: bool) -> None:
        """Rank 0's buffers (and parameters, unless ``buffers_only``) copied into every replica."""
        tensors = list(model.buffers()) if buffers_only else [*model.parameters(), *model.buffers()]
        if tensors:
            _coalesced(tensors, "broadcast")

    def average_gradients(self, params: list[torch.Tensor]) -> None:
        """``p.grad <- (1/world) sum_r p.grad_r`` for every parameter an optimizer steps. A parameter without a
        gradient on some ranks joins with zeros; one without a gradient on every rank keeps ``grad = None``, so
        the optimizer skips it as it would in one process."""
        if not params:
            return
        has = torch.tensor([p.grad is not None for p in params], dtype=torch.int32, device=params[0].device)
        torch.distributed.all_reduce(has, op=torch.distributed.ReduceOp.SUM)
        used = [p for p, h in zip(params, has.tolist()) if h > 0]
        for p in used:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        _coalesced([p.grad for p in used], "sum")  # type: ignore[misc]
        for p in used:
            p.grad.div_(self.world)  # type: ignore[union-attr]
