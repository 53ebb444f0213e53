"""Models prepared for multi-process training (``accelerator.prepare``, ``DistributedDataParallel``,
``fully_shard``): which wrapper, the module inside it, the device it computes on, and a reference pass
at frozen weights that keeps FSDP's sharding.

Under DDP, FSDP and DeepSpeed ZeRO-3 the wrapper synchronizes gradients during ``backward`` (DDP
all-reduces, FSDP and ZeRO-3 reduce-scatter into each rank's shard), so a strategy must not average them
again, and the frozen reference a method compares against (NPO, RMU, KL retain terms) must not be a full,
unsharded copy. ZeRO-3 engines have their own module (:mod:`erasus.distributed.zero3`).
"""

from __future__ import annotations

from typing import Any, Callable, Literal

import torch

from ..errors import ErasusTypeError

__all__ = ["ShardedReference", "compute_device", "unwrap", "wrapper_kind"]

Kind = Literal["ddp", "fsdp", "fsdp1", "deepspeed"]


def wrapper_kind(model: torch.nn.Module) -> Kind | None:
    """``"ddp"`` (``DistributedDataParallel``), ``"fsdp"`` (FSDP2 ``fully_shard``, what accelerate's
    ``fsdp_version: 2`` prepares), ``"fsdp1"`` (``FullyShardedDataParallel``), ``"deepspeed"``
    (a ``DeepSpeedEngine``) or None for a plain module."""
    if isinstance(model, torch.nn.parallel.DistributedDataParallel):
        return "ddp"
    if type(model).__name__ == "DeepSpeedEngine":
        return "deepspeed"
    if not torch.distributed.is_available():
        return None
    from torch.distributed.fsdp import FSDPModule, FullyShardedDataParallel

    if isinstance(model, FSDPModule):
        return "fsdp"
    if isinstance(model, FullyShardedDataParallel):
        return "fsdp1"
    return None


def check_supported(model: torch.nn.Module) -> Kind | None:
    """The wrapper kind, refusing those the strategies cannot train correctly."""
    kind = wrapper_kind(model)
    if kind == "fsdp1":
        raise ErasusTypeError(
            "the model is wrapped in FSDP1 (FullyShardedDataParallel), whose flat parameters cannot be swapped to "
            "the frozen reference weights; prepare it with FSDP2 (accelerate: fsdp_version: 2, as "
            "configs/accelerate/fsdp.yaml; torch: torch.distributed.fsdp.fully_shard)")
    if kind == "deepspeed":
        from .zero3 import check_engine

        check_engine(model)
    return kind


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The module inside DDP or a DeepSpeedEngine (FSDP2 modules are the model itself, with sharded
    parameters)."""
    return model.module if wrapper_kind(model) in ("ddp", "deepspeed") else model


def compute_device(model: torch.nn.Module) -> torch.device:
    """Where a wrapped model's forward runs: FSDP2's device (parameters may live on the CPU under
    ``CPUOffloadPolicy``), else the device of the parameters."""
    kind = wrapper_kind(model)
    if kind == "fsdp":
        return torch.device(model._get_fsdp_state()._device)  # type: ignore[operator]
    if kind == "deepspeed":
        return torch.device(model.device)
    first = next(model.parameters(), None)
    return first.device if first is not None else torch.device("cpu")


def _reshard_all(model: torch.nn.Module) -> None:
    from torch.distributed.fsdp import FSDPModule

    for m in model.modules():
        if isinstance(m, FSDPModule):
            m.reshard()


class ShardedReference:
    """The FSDP2 model as it was when this object was built, evaluated without gradients.

    Holds a copy of this rank's parameter shards only (``1/world`` of the model). A reference pass
    reshards every FSDP module (so each parameter is its sharded DTensor again), copies the frozen shards
    in, runs ``fn`` (FSDP all-gathers them as in any forward), reshards, and copies the trained shards back;
    a pending backward then all-gathers the trained weights again. Every rank must call it the same number
    of times (the forward is a collective), as it must call the training forward.
    """

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        _reshard_all(model)
        with torch.no_grad():
            self.params = list(model.parameters())
            self.frozen = [p.detach().clone() for p in self.params]
            self.scratch = [torch.empty_like(p) for p in self.params]

    def __call__(self, fn: Callable[[torch.nn.Module], torch.Tensor]) -> torch.Tensor:
        model = self.model
        flags = [(m, m.training) for m in model.modules()]
        _reshard_all(model)
        with torch.no_grad():
            for p, f, s in zip(self.params, self.frozen, self.scratch):
                s.copy_(p.detach())
                p.detach().copy_(f)
            try:
                model.eval()
                out = fn(model).detach()
            finally:
                _reshard_all(model)
                for p, s in zip(self.params, self.scratch):
                    p.detach().copy_(s)
                for m, flag in flags:
                    m.training = flag
        return out


def all_ranks_agree(value: Any, *, what: str) -> None:
    """Raise unless every process of an initialized group holds the same ``value`` (e.g. the step count: a
    rank that runs one step more than the others would wait forever in a collective)."""
    from ..errors import InvalidInputError

    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return
    seen: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(seen, value)
    if any(v != seen[0] for v in seen):
        raise InvalidInputError(f"the processes disagree on {what}: {seen} (rank order); give every rank the same "
                                "number of samples per shard or pass steps=")
