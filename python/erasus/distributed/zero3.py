"""DeepSpeed ZeRO-3 engines (``accelerator.prepare`` with ``configs/accelerate/deepspeed_zero3.yaml``) under
erasus' own training loop.

Under ZeRO-3 every parameter of ``engine.module`` is an empty (numel 0) tensor outside a forward / backward: this
rank's slice lives in ``p.ds_tensor`` (a view of the optimizer's flat low-precision partition) and the fp32
master slice in ``engine.optimizer.fp32_partitioned_groups_flat``; gradients are reduce-scattered into the
optimizer's partitions during ``engine.backward`` and never appear in ``p.grad``. So erasus, for an engine:

- steps with ``engine.backward(loss)`` / ``engine.step()`` (what ``accelerator.backward`` and the prepared
  optimizer's ``step`` call), with the engine's own optimizer: the strategy's ``optimizer=`` must name the
  same kind, erasus gives its param groups the hyperparameters and a fresh state of the optimizer it would
  have built itself, and puts the user's state, hyperparameters, LR scheduler and clipping back afterwards
  (:class:`EngineSession`); gradient clipping is the engine's (``max_grad_norm`` becomes its ``clip_grad``);
- snapshots and restores this rank's partitions, never the empty ``p.data`` (:class:`EngineSnapshot`);
- evaluates the frozen reference by copying the starting partitions into ``ds_tensor`` around a forward
  (:class:`Zero3Reference`), so the reference is sharded exactly like the model (``1/world`` per rank).

TRL (``trl/models/utils.py: prepare_deepspeed``) and OpenUnlearning (``src/trainer/unlearn/base.py``) give the
reference its own ``deepspeed.initialize`` engine without optimizer, built from a second copy the user loads;
erasus receives only the trained engine, so it keeps a copy of this rank's starting partitions instead (the same
memory as a second ZeRO-3 engine, no second model to load). Partition layout read from deepspeed 0.19
``runtime/zero/stage3.py`` (``_reassign_or_swap_out_partitioned_parameters``, ``_post_step``) and
``runtime/zero/partitioned_param_coordinator.py`` (``release_and_reset_all``).
"""

from __future__ import annotations

import copy
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import torch

from ..errors import ErasusTypeError, InvalidInputError

__all__ = ["EngineSession", "EngineSnapshot", "Zero3Reference", "check_engine"]

_KINDS = {torch.optim.SGD: "sgd", torch.optim.Adam: "adam", torch.optim.AdamW: "adamw"}


def _kind(optimizer: torch.optim.Optimizer) -> str | None:
    """``"sgd"``, ``"adam"`` or ``"adamw"`` for the engine's base optimizer; DeepSpeedCPUAdam (what DeepSpeed
    substitutes under ``offload_optimizer``) is Adam or AdamW by its ``adamw_mode``."""
    if type(optimizer).__name__ == "DeepSpeedCPUAdam":
        return "adamw" if getattr(optimizer, "adamw_mode", True) else "adam"
    return _KINDS.get(type(optimizer))


def check_engine(engine: Any) -> None:
    """Raise unless erasus can train ``engine`` step for step: ZeRO stage 3, an optimizer, one micro-step per
    optimizer step, no fp16 loss scaling (it skips steps on overflow), partitions in memory (not NVMe)."""
    stage = engine.zero_optimization_stage()
    if stage != 3:
        raise ErasusTypeError(f"the DeepSpeedEngine runs ZeRO stage {stage}; erasus trains ZeRO-3 engines "
                              "(configs/accelerate/deepspeed_zero3.yaml); for replicated weights use DDP "
                              "(configs/accelerate/ddp.yaml)")
    opt = engine.optimizer
    if opt is None or not hasattr(opt, "fp32_partitioned_groups_flat"):
        raise ErasusTypeError("the DeepSpeedEngine has no ZeRO-3 optimizer; prepare it with one "
                              "(accelerator.prepare(model, torch.optim.SGD(model.parameters(), lr=0.0)))")
    if engine.gradient_accumulation_steps() != 1:
        raise InvalidInputError(f"the DeepSpeed config has gradient_accumulation_steps="
                                f"{engine.gradient_accumulation_steps()}; erasus takes one optimizer step per "
                                "batch: set it to 1")
    if engine.fp16_enabled():
        raise InvalidInputError("the DeepSpeed config enables fp16, whose dynamic loss scaling skips steps on "
                                "overflow; use bf16 or fp32 (erasus' mixed_precision='bf16' autocasts)")
    if getattr(opt, "swap_optimizer", False) or any(g is None for g in opt.fp16_partitioned_groups_flat):
        raise InvalidInputError("the DeepSpeed config offloads partitions to NVMe; erasus snapshots partitions "
                                "in memory: offload to 'cpu' or not at all")


def _params(engine: Any) -> list[torch.nn.Parameter]:
    return list(engine.module.parameters())


def _release_all(engine: Any) -> None:
    """Every parameter released back to its empty (numel 0) partitioned form (persistent ones too), so the next forward all-gathers
    each from ``ds_tensor``."""
    engine.optimizer.parameter_offload.partition_all_parameters()


class EngineSnapshot:
    """This rank's state of a ZeRO-3 engine: parameter partitions (low precision and fp32 master), the
    optimizer's state and hyperparameters, ``requires_grad`` flags and step counters; :meth:`restore` puts
    them back without a collective (a rank that failed alone must not wait for the others)."""

    def __init__(self, engine: Any) -> None:
        check_engine(engine)
        self.engine = engine
        opt = engine.optimizer
        _release_all(engine)
        with torch.no_grad():
            self.params = _params(engine)
            self.parts = [p.ds_tensor.detach().clone() for p in self.params]
            self.master = [f.detach().clone() for f in opt.fp32_partitioned_groups_flat]
        self.requires_grad = [p.requires_grad for p in self.params]
        self.state = copy.deepcopy(opt.optimizer.state)
        self.groups = [{k: copy.deepcopy(v) for k, v in g.items() if k != "params"} for g in opt.param_groups]
        self.steps = (engine.global_steps, engine.global_samples, engine.micro_steps)

    def restore(self) -> None:
        engine, opt = self.engine, self.engine.optimizer
        _release_all(engine)
        with torch.no_grad():
            for p, part in zip(self.params, self.parts):
                p.ds_tensor.copy_(part)
            for f, m in zip(opt.fp32_partitioned_groups_flat, self.master):
                f.copy_(m)
        for p, flag in zip(self.params, self.requires_grad):
            p.requires_grad_(flag)
        opt.optimizer.state = self.state
        for g, saved in zip(opt.param_groups, self.groups):
            g.update(saved)
        opt.zero_grad(set_to_none=True)
        engine.global_steps, engine.global_samples, engine.micro_steps = self.steps


class EngineSession:
    """The engine's optimizer as erasus' own for one training phase: the hyperparameters of ``reference``
    (the optimizer erasus would have built, e.g. ``torch.optim.SGD([...], lr=run.lr, momentum=...)``) on every
    param group, a fresh state, no LR scheduler, clipping to ``max_grad_norm`` (none when None); :meth:`close`
    gives the user's optimizer state, hyperparameters, scheduler and clipping back (the trained partitions stay)."""

    def __init__(self, engine: Any, reference: torch.optim.Optimizer, *, max_grad_norm: float | None,
                 strategy: str) -> None:
        check_engine(engine)
        opt = engine.optimizer
        base = opt.optimizer
        kind = _kind(base)
        want = _KINDS[type(reference)]
        if kind is None:
            raise InvalidInputError(
                f"the DeepSpeedEngine steps a {type(base).__name__}; erasus drives torch.optim.SGD, Adam or AdamW "
                "through the engine: prepare it with one of them and pass the same optimizer= to the strategy")
        if kind != want:
            raise InvalidInputError(
                f"strategy {strategy!r} trains with optimizer={want!r}, but the DeepSpeedEngine steps "
                f"{type(base).__name__} and erasus uses the engine's own optimizer (its partitions hold the fp32 "
                f"master weights): pass optimizer={kind!r} to the strategy, or prepare the engine with the "
                f"optimizer the strategy names")
        self.engine, self.opt = engine, opt
        self.saved_groups = [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups]
        self.saved_state = opt.optimizer.state
        self.saved_scheduler, self.saved_clip = engine.lr_scheduler, opt.clip_grad
        for g in opt.param_groups:  # the hyperparameters both optimizers have (DeepSpeedCPUAdam: lr, betas, ...)
            g.update({k: copy.deepcopy(v) for k, v in reference.defaults.items() if k in g})
        opt.optimizer.state = defaultdict(dict)
        engine.lr_scheduler = None
        opt.clip_grad = float(max_grad_norm) if max_grad_norm is not None else 0.0
        opt.zero_grad(set_to_none=True)

    def step(self, loss: torch.Tensor) -> None:
        """``engine.backward(loss)`` then ``engine.step()`` (reduce-scatter, clip, update, zero the grads)."""
        self.engine.backward(loss)
        self.engine.step()

    def close(self) -> None:
        opt = self.opt
        opt.zero_grad(set_to_none=True)
        for g, saved in zip(opt.param_groups, self.saved_groups):
            g.update(saved)
        opt.optimizer.state = self.saved_state
        self.engine.lr_scheduler, opt.clip_grad = self.saved_scheduler, self.saved_clip


class Zero3Reference:
    """A ZeRO-3 engine as it was when this object was built, evaluated without gradients.

    Holds a copy of this rank's partitions only. A reference pass releases every gathered parameter, copies
    the frozen partitions into ``ds_tensor``, runs ``fn`` (ZeRO-3's hooks all-gather them as in any forward),
    releases again and copies the trained partitions back, so a pending backward re-gathers the trained
    weights. Every rank must call it the same number of times (the forward is a collective).
    """

    def __init__(self, engine: Any) -> None:
        check_engine(engine)
        self.engine = engine
        _release_all(engine)
        with torch.no_grad():
            self.params = _params(engine)
            self.frozen = [p.ds_tensor.detach().clone() for p in self.params]
            self.scratch = [torch.empty_like(f) for f in self.frozen]

    def __call__(self, fn: Callable[[torch.nn.Module], torch.Tensor]) -> torch.Tensor:
        engine = self.engine
        flags = [(m, m.training) for m in engine.module.modules()]
        _release_all(engine)
        with torch.no_grad():
            for p, f, s in zip(self.params, self.frozen, self.scratch):
                s.copy_(p.ds_tensor)
                p.ds_tensor.copy_(f)
            try:
                engine.module.eval()
                out = fn(engine.module).detach()
            finally:
                _release_all(engine)
                for p, s in zip(self.params, self.scratch):
                    p.ds_tensor.copy_(s)
                for m, flag in flags:
                    m.training = flag
        return out
