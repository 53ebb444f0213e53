"""What every LLM strategy shares: AdamW defaults, gradient checkpointing, bf16 autocast, a frozen reference,
and synchronous data parallelism.

Multi-process runs (``accelerate launch`` or ``torchrun``), each process feeding its own shard of the
forget/retain data (``erasus.data.subset(forget, range(rank, n, world_size))``), every rank running the same
number of steps (checked before the first one):

- a model prepared by accelerate (``configs/accelerate/ddp.yaml`` gives ``DistributedDataParallel``,
  ``configs/accelerate/fsdp.yaml`` FSDP2 ``fully_shard`` with CPU offload) is trained in place
  (``inplace=True``) through its wrapper, which synchronizes gradients in ``backward``; erasus adds no
  all-reduce of its own. The frozen reference is a plain copy under DDP and, under FSDP2, this rank's copy
  of its parameter shards, swapped in for the reference forward
  (:class:`erasus.distributed.wrappers.ShardedReference`), so it is sharded like the model; ZeRO-3 likewise
  (:class:`erasus.distributed.zero3.Zero3Reference`).
- a plain model under an initialized process group: the shared loop (:meth:`erasus.strategies.base.Run.train`,
  for every strategy) starts every replica from rank 0's weights and averages gradients across processes
  (``all_reduce``) before every optimizer step, so the replicas stay identical. For example::

    # unlearn.py
    import torch.distributed as dist
    from accelerate import PartialState
    PartialState()                             # or dist.init_process_group("gloo"/"nccl") under torchrun
    rank, world = dist.get_rank(), dist.get_world_size()
    shard = erasus.data.subset(forget, range(rank, len(forget), world))
    model = erasus.get_strategy("npo").unlearn(model=model, forget_data=shard, retain_data=retain_shard)

    accelerate launch --multi_gpu --num_processes 2 unlearn.py    # or: torchrun --nproc_per_node 2 unlearn.py
    # on CPUs: CUDA_VISIBLE_DEVICES= accelerate launch --multi_gpu ...  (accelerate's --cpu starts one process
    # unless mpirun is configured); tests/llm/accelerate_npo.py is a complete, tested script

With a prepared model instead::

    accelerator = Accelerator()                 # accelerate launch --config_file configs/accelerate/fsdp.yaml
    # FSDP2: sharded, optionally offloaded to the CPU; accelerate wants an optimizer with it (erasus builds its own)
    model, _ = accelerator.prepare(model, torch.optim.SGD(model.parameters(), lr=0.0))
    erasus.get_strategy("npo").unlearn(model=model, forget_data=shard, inplace=True)

Accelerate runs FSDP only with accelerators (on CPUs it sets up no FSDP); ``tests/llm/accelerate_fsdp.py``,
launched with ``configs/accelerate/fsdp.yaml`` on 2 gloo processes, lifts only that gate and the CUDA-pinned
offload, so accelerate's own ``fsdp2_prepare_model`` shards the model. A DeepSpeed ZeRO-3 engine
(``configs/accelerate/deepspeed_zero3.yaml``) is trained through ``engine.backward`` / ``engine.step`` with its
own optimizer, and its frozen reference is this rank's copy of the starting partitions
(:mod:`erasus.distributed.zero3`); ``tests/llm/accelerate_zero3.py`` is the tested 2-process CPU script.
"""

from __future__ import annotations

import abc
import contextlib
import copy
from collections.abc import Callable
from typing import Any, ClassVar

import torch

from ...distributed.wrappers import ShardedReference, unwrap, wrapper_kind
from ...errors import InvalidInputError
from ...tasks.causal_lm import IGNORE_INDEX, CausalLMTask
from ..base import Run, UnlearningStrategy

__all__ = ["LLMStrategy", "dataset_attr", "frozen_reference", "retain_kl", "sequence_log_prob"]

_LLM_COMMON = {"optimizer": "adamw", "gradient_checkpointing": False, "mixed_precision": None}


def sequence_log_prob(model: torch.nn.Module, batch: Any, *, task: Any = None) -> torch.Tensor:
    """Summed answer log-likelihood ``log pi(y|x) = sum_t log p(y_t | x, y_<t)`` per sample, shape (B,); with
    ``task`` a :class:`~erasus.tasks.seq2seq.Seq2SeqTask`, the summed log-likelihood of the transcript tokens
    given the encoder input (Whisper: the audio)."""
    if task is not None and getattr(task, "name", None) == "seq2seq":
        return task.log_likelihood(model, batch)
    return CausalLMTask().log_likelihood(model, batch, normalize=False)


def dataset_attr(ds: Any, name: str) -> Any:
    """Attribute ``name`` of a dataset, looked up through coreset ``Subset`` layers (None when absent)."""
    while True:
        if hasattr(ds, name):
            return getattr(ds, name)
        if isinstance(ds, torch.utils.data.Subset):
            ds = ds.dataset
            continue
        return None


def retain_kl(logits: torch.Tensor, ref_logits: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """``KL(p_ref || p_theta)`` of the next-token distributions, averaged over the real (unpadded) tokens of
    the batch (OpenUnlearning's KL retain loss, without counting padding positions)."""
    log_p = torch.log_softmax(logits.float(), dim=-1)
    log_q = torch.log_softmax(ref_logits.float(), dim=-1)
    kl = (log_q.exp() * (log_q - log_p)).sum(-1)
    m = attention_mask.to(kl.dtype)
    return (kl * m).sum() / m.sum().clamp(min=1)


def answer_token_count(batch: Any) -> torch.Tensor:
    """Number of scored (shifted) answer tokens per sample."""
    return (batch["labels"][:, 1:] != IGNORE_INDEX).sum(-1)


class FrozenReference:
    """The model as it was before unlearning, evaluated without gradients.

    Under LoRA the adapters are switched off for the reference pass (no copy of the base weights);
    otherwise the caller's untouched model is used, or a frozen copy of the starting state when the caller's
    model is the one being trained (``inplace=True``) or lives on another device. Under FSDP2 the frozen
    copy is of this rank's shards (:class:`~erasus.distributed.wrappers.ShardedReference`); under DDP a
    copy of the inner module, which runs without collectives. Build it before training.
    """

    def __init__(self, model: torch.nn.Module, run: Run) -> None:
        inner = unwrap(model)
        self.peft = hasattr(inner, "disable_adapter") and hasattr(inner, "peft_config")
        self.model = inner
        self.sharded = None
        if not self.peft and wrapper_kind(model) == "fsdp":
            self.sharded = ShardedReference(model)
        elif not self.peft and wrapper_kind(model) == "deepspeed":
            from ...distributed.zero3 import Zero3Reference

            self.sharded = Zero3Reference(model)
        elif not self.peft:
            original = run.original
            first = next(original.parameters())
            # inplace=True trains the caller's model itself: freeze a copy of its starting state instead
            shared = any(p is first for p in model.parameters())
            if first.device == run.device and not shared:
                self.ref = original  # read-only: __call__ restores its train/eval flag
            else:
                self.ref = copy.deepcopy(inner).to(run.device).requires_grad_(False)

    @contextlib.contextmanager
    def _ctx(self) -> Any:
        if self.peft:
            with self.model.disable_adapter():
                yield self.model
        else:
            yield self.ref

    def __call__(self, fn: Callable[[torch.nn.Module], torch.Tensor]) -> torch.Tensor:
        if self.sharded is not None:
            return self.sharded(fn)
        with torch.no_grad(), self._ctx() as ref:
            was = ref.training
            ref.eval()
            try:
                return fn(ref).detach()
            finally:
                ref.train(was)


def frozen_reference(model: torch.nn.Module, run: Run) -> FrozenReference:
    """The :class:`FrozenReference` of ``model`` for this call, built once per run: NPO's reference and a KL
    retain term share it (with ``inplace=True`` each would otherwise hold a full copy of the model)."""
    cached = getattr(run, "_frozen_reference", None)
    if cached is not None and cached.model is unwrap(model):
        return cached
    ref = FrozenReference(model, run)
    run._frozen_reference = ref  # type: ignore[attr-defined]
    return ref


class LLMStrategy(UnlearningStrategy):
    """Base of the causal-LM strategies: AdamW by default, ``gradient_checkpointing`` and
    ``mixed_precision="bf16"`` (autocast on the forward passes) options; subclasses implement :meth:`_unlearn_lm`."""

    llm_defaults: ClassVar[dict[str, Any]] = {}
    #: the method also applies to encoder-decoder transcripts (Whisper) through the seq2seq task
    accepts_seq2seq: ClassVar[bool] = False

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        cls.defaults = {**_LLM_COMMON, **cls.llm_defaults}

    def _unlearn(self, model: torch.nn.Module, run: Run, *, gradient_checkpointing: bool,
                 mixed_precision: str | None, **options: Any) -> torch.nn.Module:
        if not isinstance(run.task, CausalLMTask) and not (self.accepts_seq2seq and run.task.name == "seq2seq"):
            raise InvalidInputError(f"strategy {self.registry_name!r} needs a causal LM (task 'causal_lm'), "
                                    f"got task {run.task.name!r}")
        if mixed_precision not in (None, "bf16"):
            raise InvalidInputError(f"mixed_precision must be None or 'bf16' (fp16 needs loss scaling), got {mixed_precision!r}")
        self._amp = mixed_precision
        self._device_type = run.device.type
        retain_loss = options.pop("retain_loss", "nll")
        if retain_loss not in ("nll", "kl"):
            raise InvalidInputError(f"retain_loss must be 'nll' or 'kl', got {retain_loss!r}")
        if retain_loss == "kl" and run.task.name == "seq2seq":
            raise InvalidInputError("retain_loss='kl' compares next-token distributions of a causal LM; use 'nll' "
                                    "for an encoder-decoder")
        # KL needs the model as it was: build the frozen reference before any step
        kl = retain_loss == "kl" and run.retain is not None and options.get("alpha", 1.0) != 0
        self._retain_ref = frozen_reference(model, run) if kl else None
        # transformers >= 5 renamed gradient checkpointing to activation checkpointing
        inner = unwrap(model)
        prefix = "activation" if hasattr(inner, "activation_checkpointing_enable") else "gradient"
        enable = getattr(inner, f"{prefix}_checkpointing_enable", None)
        if gradient_checkpointing:
            if enable is None:
                raise InvalidInputError(f"{type(inner).__name__} has no gradient_checkpointing_enable()")
            enable(**{f"{prefix}_checkpointing_kwargs": {"use_reentrant": False}})
        try:
            return self._unlearn_lm(model, run, **options)
        finally:
            if gradient_checkpointing:
                getattr(inner, f"{prefix}_checkpointing_disable")()

    def autocast(self) -> Any:
        """bf16 autocast when ``mixed_precision="bf16"``, else a no-op context."""
        if self._amp == "bf16":
            return torch.autocast(device_type=self._device_type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def train(self, model: torch.nn.Module, run: Run, loss_fn: Callable[[int], torch.Tensor], *, num_steps: int,
              desc: str, optimizer: torch.optim.Optimizer | None = None, max_grad_norm: float | None = None) -> None:
        """``num_steps`` steps of ``loss_fn`` under autocast; gradients averaged over processes, then clipped to
        ``max_grad_norm`` (total L2 norm of the trained parameters) when given."""
        def wrapped(step: int) -> torch.Tensor:
            with self.autocast():
                return loss_fn(step).float()

        params = [p for p in model.parameters() if p.requires_grad]

        def before_step() -> None:
            torch.nn.utils.clip_grad_norm_(params, max_grad_norm)  # type: ignore[arg-type]

        if wrapper_kind(model) == "deepspeed":  # ZeRO-3 gradients live in the engine: it clips them
            run.train(model, wrapped, num_steps=num_steps, desc=desc, optimizer=optimizer,
                      max_grad_norm=max_grad_norm)
            return
        # Run.train averages the gradients over processes first (plain models), so the clip sees the mean
        run.train(model, wrapped, num_steps=num_steps, desc=desc, optimizer=optimizer,
                  before_step=before_step if max_grad_norm is not None else None)

    def retain_term(self, model: torch.nn.Module, run: Run, retain: Any, alpha: float) -> torch.Tensor:
        """``alpha * L_retain`` on the next retain batch (0 when ``alpha == 0`` or there is no retain set):
        the answer NLL (``retain_loss="nll"``) or :func:`retain_kl` against the model before unlearning
        (``retain_loss="kl"``, OpenUnlearning's ``retain_loss_type: KL``)."""
        if retain is None or alpha == 0:
            return torch.zeros((), device=run.device)
        batch = next(retain)
        if self._retain_ref is None:
            return alpha * run.task.loss(model, batch)
        ref_logits = self._retain_ref(lambda m: run.task.outputs(m, batch))
        return alpha * retain_kl(run.task.outputs(model, batch), ref_logits, batch["attention_mask"])

    @abc.abstractmethod
    def _unlearn_lm(self, model: torch.nn.Module, run: Run, **options: Any) -> torch.nn.Module:
        """Unlearn on ``model`` (a copy or snapshotted, maybe LoRA-wrapped) and return it."""
