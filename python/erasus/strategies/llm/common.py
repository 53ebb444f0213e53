"""What every LLM strategy shares: AdamW defaults, gradient checkpointing, bf16 autocast, a frozen reference,
and synchronous data parallelism.

Multi-process runs (``accelerate launch`` or ``torchrun``): when ``torch.distributed`` is initialized with
more than one process, gradients are averaged across processes (``all_reduce``) before every optimizer
step, so replicas that start from the same weights stay identical while each process feeds its own shard
of the forget/retain data (``erasus.data.subset(forget, range(rank, n, world_size))``). For example::

    # unlearn.py
    import torch.distributed as dist
    dist.init_process_group("gloo")            # "nccl" on GPUs; accelerate/torchrun set the env variables
    rank, world = dist.get_rank(), dist.get_world_size()
    shard = erasus.data.subset(forget, range(rank, len(forget), world))
    model = erasus.get_strategy("npo").unlearn(model=model, forget_data=shard, retain_data=retain_shard)

    accelerate launch --cpu --num_processes 2 unlearn.py     # or: torchrun --nproc_per_node 2 unlearn.py
"""

from __future__ import annotations

import abc
import contextlib
import copy
from collections.abc import Callable
from typing import Any, ClassVar

import torch

from ...errors import InvalidInputError
from ...tasks.causal_lm import IGNORE_INDEX, CausalLMTask
from ..base import Run, UnlearningStrategy

__all__ = ["LLMStrategy", "frozen_reference", "sequence_log_prob"]

_LLM_COMMON = {"optimizer": "adamw", "gradient_checkpointing": False, "mixed_precision": None}


def sequence_log_prob(model: torch.nn.Module, batch: Any) -> torch.Tensor:
    """Summed answer log-likelihood ``log pi(y|x) = sum_t log p(y_t | x, y_<t)`` per sample, shape (B,)."""
    return CausalLMTask().log_likelihood(model, batch, normalize=False)


def answer_token_count(batch: Any) -> torch.Tensor:
    """Number of scored (shifted) answer tokens per sample."""
    return (batch["labels"][:, 1:] != IGNORE_INDEX).sum(-1)


class FrozenReference:
    """The model as it was before unlearning, evaluated without gradients.

    Under LoRA the adapters are switched off for the reference pass (no copy of the base weights);
    otherwise the caller's untouched model is used, or a frozen copy of the starting state when the caller's
    model is the one being trained (``inplace=True``) or lives on another device. Build it before training.
    """

    def __init__(self, model: torch.nn.Module, run: Run) -> None:
        self.peft = hasattr(model, "disable_adapter") and hasattr(model, "peft_config")
        self.model = model
        if not self.peft:
            original = run.original
            first = next(original.parameters())
            # inplace=True trains the caller's model itself: freeze a copy of its starting state instead
            shared = any(p is first for p in model.parameters())
            if first.device == run.device and not shared:
                self.ref = original  # read-only: __call__ restores its train/eval flag
            else:
                self.ref = copy.deepcopy(model).to(run.device).requires_grad_(False)

    @contextlib.contextmanager
    def _ctx(self) -> Any:
        if self.peft:
            with self.model.disable_adapter():
                yield self.model
        else:
            yield self.ref

    def __call__(self, fn: Callable[[torch.nn.Module], torch.Tensor]) -> torch.Tensor:
        with torch.no_grad(), self._ctx() as ref:
            was = ref.training
            ref.eval()
            try:
                return fn(ref).detach()
            finally:
                ref.train(was)


def frozen_reference(model: torch.nn.Module, run: Run) -> FrozenReference:
    return FrozenReference(model, run)


def _grad_all_reduce(model: torch.nn.Module) -> Callable[[], None] | None:
    """Average gradients over the processes of an initialized multi-process group (None when single-process)."""
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return None
    world = dist.get_world_size()

    def sync() -> None:
        for p in model.parameters():
            if p.requires_grad:
                if p.grad is None:  # a parameter unused on this rank still joins the collective
                    p.grad = torch.zeros_like(p)
                dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
                p.grad.div_(world)

    return sync


class LLMStrategy(UnlearningStrategy):
    """Base of the causal-LM strategies: AdamW by default, ``gradient_checkpointing`` and
    ``mixed_precision="bf16"`` (autocast on the forward passes) options; subclasses implement :meth:`_unlearn_lm`."""

    llm_defaults: ClassVar[dict[str, Any]] = {}

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        cls.defaults = {**_LLM_COMMON, **cls.llm_defaults}

    def _unlearn(self, model: torch.nn.Module, run: Run, *, gradient_checkpointing: bool,
                 mixed_precision: str | None, **options: Any) -> torch.nn.Module:
        if not isinstance(run.task, CausalLMTask):
            raise InvalidInputError(f"strategy {self.registry_name!r} needs a causal LM (task 'causal_lm'), "
                                    f"got task {run.task.name!r}")
        if mixed_precision not in (None, "bf16"):
            raise InvalidInputError(f"mixed_precision must be None or 'bf16' (fp16 needs loss scaling), got {mixed_precision!r}")
        self._amp = mixed_precision
        self._device_type = run.device.type
        # transformers >= 5 renamed gradient checkpointing to activation checkpointing
        prefix = "activation" if hasattr(model, "activation_checkpointing_enable") else "gradient"
        enable = getattr(model, f"{prefix}_checkpointing_enable", None)
        if gradient_checkpointing:
            if enable is None:
                raise InvalidInputError(f"{type(model).__name__} has no gradient_checkpointing_enable()")
            enable(**{f"{prefix}_checkpointing_kwargs": {"use_reentrant": False}})
        try:
            return self._unlearn_lm(model, run, **options)
        finally:
            if gradient_checkpointing:
                getattr(model, f"{prefix}_checkpointing_disable")()

    def autocast(self) -> Any:
        """bf16 autocast when ``mixed_precision="bf16"``, else a no-op context."""
        if self._amp == "bf16":
            return torch.autocast(device_type=self._device_type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def train(self, model: torch.nn.Module, run: Run, loss_fn: Callable[[int], torch.Tensor], *, num_steps: int,
              desc: str, optimizer: torch.optim.Optimizer | None = None) -> None:
        def wrapped(step: int) -> torch.Tensor:
            with self.autocast():
                return loss_fn(step).float()

        run.train(model, wrapped, num_steps=num_steps, desc=desc, optimizer=optimizer,
                  before_step=_grad_all_reduce(model))

    def retain_term(self, model: torch.nn.Module, run: Run, retain: Any, alpha: float) -> torch.Tensor:
        """``alpha * NLL`` on the next retain batch (0 when ``alpha == 0`` or there is no retain set)."""
        if retain is None or alpha == 0:
            return torch.zeros((), device=run.device)
        return alpha * run.task.loss(model, next(retain))

    @abc.abstractmethod
    def _unlearn_lm(self, model: torch.nn.Module, run: Run, **options: Any) -> torch.nn.Module:
        """Unlearn on ``model`` (a copy or snapshotted, maybe LoRA-wrapped) and return it."""
