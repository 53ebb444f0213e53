"""The :class:`UnlearningStrategy` protocol and the one training loop every gradient strategy shares.

A strategy is configured once (``get_strategy("scrub", alpha=0.01)``) and applied with
:meth:`UnlearningStrategy.unlearn`, which

* works on a deep copy of the model (``inplace=False``, the default) or snapshots the model and restores it
  bit for bit if anything raises (``inplace=True``), so a failed call never changes the caller's model;
* resolves the task adapter (:func:`erasus.tasks.infer_task`), the forget/retain data and the per-sample
  ``weights`` of a weighted coreset (looked up per batch through :class:`erasus.data.IndexedDataset`);
* seeds every random choice from ``seed`` without touching the global RNG;
* optionally trains LoRA adapters (peft) instead of the full weights and merges them back.

Subclasses implement :meth:`_unlearn(model, run, **options)` using the :class:`Run` helpers.
"""

from __future__ import annotations

import abc
import copy
import itertools
import warnings
from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from ..data import IndexedDataset, as_dataset, collate_of
from ..distributed.data_parallel import Replicas, world_size
from ..distributed.wrappers import all_ranks_agree, check_supported, compute_device, wrapper_kind
from ..errors import ErasusTypeError, InvalidInputError, NonFiniteError, TargetNotReachedWarning, require
from ..tasks import Task, get_task, infer_task, reduce_loss
from .until import History, StoppingRule

__all__ = ["UnlearningStrategy", "Run", "check_finite_loss", "reinitialize", "per_sample_kl", "random_labels",
           "relabelled_loss", "weighted"]

_COMMON = {"task": None, "batch_size": 64, "optimizer": "sgd", "momentum": 0.9, "weight_decay": 0.0}


def reinitialize(model: torch.nn.Module, *, seed: int) -> torch.nn.Module:
    """A fresh copy of ``model`` in which no trained parameter and no running statistic survives.

    Under ``seed``, every module's own initialiser runs: ``reset_parameters`` (``Linear``, ``Conv``, ``Embedding``,
    norms; BatchNorm's also resets its running statistics), ``_reset_parameters`` (``MultiheadAttention``'s
    in-projection), ``reset_running_stats``; then, for a transformers ``PreTrainedModel``, its ``_init_weights``
    on every module (the model's own init, which also covers bare parameters such as a ViT's position
    embedding or class token). A tensor counts as reinitialised when an initialiser wrote to it (its version
    counter moved), not when its value changed, so an init that reproduces the old value is still an init.

    Raises:
        InvalidInputError: some parameter has no initialiser (a bare ``nn.Parameter`` of a custom module): it
            would keep its trained value, which breaks SISA's exact unlearning; the message names it and says to
            pass a ``model_factory``. ``model`` is never modified.

    Buffers other than running statistics (position ids, masks, constant tables) are not learned and are kept.
    """
    fresh = copy.deepcopy(model)
    tensors: dict[str, torch.Tensor] = {f"parameter {n}": t for n, t in fresh.named_parameters()}
    tensors.update({f"buffer {n}": t for n, t in fresh.named_buffers()})
    before = {name: (t._version, t.data_ptr()) for name, t in tensors.items()}
    hf_names = [n for n, m in fresh.named_modules() if callable(getattr(m, "_init_weights", None))
                and type(m).__module__.startswith("transformers.")]
    # the outermost transformers models only: an inner one (GPT2LMHeadModel.transformer) is covered by its parent
    hf_roots = [fresh.get_submodule(n) for n in hf_names
                if not any(o != n and (o == "" or n.startswith(o + ".")) for o in hf_names)]
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        for m in fresh.modules():
            for reset_name in ("reset_parameters", "_reset_parameters", "reset_running_stats"):
                reset = getattr(m, reset_name, None)
                if callable(reset):
                    reset()
        for root in hf_roots:
            # transformers skips tensors flagged as already initialised (loaded from a checkpoint)
            for m in root.modules():
                if hasattr(m, "_is_hf_initialized"):
                    setattr(m, "_is_hf_initialized", False)
                for t in itertools.chain(m.parameters(recurse=False), m.buffers(recurse=False)):
                    if hasattr(t, "_is_hf_initialized"):
                        t._is_hf_initialized = False
            init_weights = getattr(root, "_init_weights")
            for m in root.modules():
                init_weights(m)
    _reinit_from_config(fresh, hf_names, hf_roots, before, seed=seed)
    after: dict[str, torch.Tensor] = {f"parameter {n}": t for n, t in fresh.named_parameters()}
    after.update({f"buffer {n}": t for n, t in fresh.named_buffers()})
    stale = [name for name, t in after.items() if name in before and (t._version, t.data_ptr()) == before[name]
             and (name.startswith("parameter ") or _is_running_stat(fresh, name[len("buffer "):]))]
    if stale:
        shown = ", ".join(s.split(" ", 1)[1] for s in stale[:6]) + (f" and {len(stale) - 6} more" if len(stale) > 6 else "")
        raise InvalidInputError(
            f"cannot reinitialise {len(stale)} trained tensor(s) of {type(model).__name__}: {shown}; their modules have "
            "no reset_parameters() (nor transformers _init_weights). Add one, or build the fresh model yourself: "
            "model_factory= for retrain / sisa, bad_teacher= for bad_teacher, incompetent_model= for zrf"
        )
    return fresh


def _reinit_from_config(fresh: torch.nn.Module, hf_names: list[str], hf_roots: list[torch.nn.Module],
                        before: dict[str, tuple[int, int]], *, seed: int) -> None:
    """Parameters that a transformers model sets in ``__init__`` and its ``_init_weights`` leaves alone (CLIP's
    ``logit_scale``, from ``config.logit_scale_init_value``) take their value from a model built afresh from the
    same config, under ``seed``."""
    names = {id(r): n for n, r in ((n, fresh.get_submodule(n)) for n in hf_names) if any(r is q for q in hf_roots)}
    for root in hf_roots:
        prefix = names[id(root)] + "." if names[id(root)] else ""
        left = [n for n, t in root.named_parameters()
                if (t._version, t.data_ptr()) == before.get(f"parameter {prefix}{n}")]
        if not left:
            continue
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(seed)
            built = dict(type(root)(copy.deepcopy(root.config)).named_parameters())
        own = dict(root.named_parameters())
        with torch.no_grad():
            for n in left:
                if n in built and built[n].shape == own[n].shape:
                    own[n].copy_(built[n])


def _is_running_stat(model: torch.nn.Module, buffer_name: str) -> bool:
    """Whether a buffer holds statistics learned from data (a norm layer's running mean / var / count)."""
    owner_name, _, attr = buffer_name.rpartition(".")
    owner = model.get_submodule(owner_name) if owner_name else model
    return isinstance(owner, torch.nn.modules.batchnorm._NormBase) and attr in (
        "running_mean", "running_var", "num_batches_tracked")


def per_sample_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, *, temperature: float = 1.0) -> torch.Tensor:
    """``T^2 * KL(softmax(t/T) || softmax(s/T))`` per sample (mean over any token axes), shape (B,)."""
    t = temperature
    log_p_s = torch.log_softmax(student_logits / t, dim=-1)
    log_p_t = torch.log_softmax(teacher_logits.detach() / t, dim=-1)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(-1) * (t * t)
    return kl.reshape(kl.shape[0], -1).mean(1)


def random_labels(y: torch.Tensor, num_classes: int, *, exclude_true: bool, generator: torch.Generator) -> torch.Tensor:
    """Uniform random labels; with ``exclude_true`` uniform over the ``C - 1`` wrong classes. Token labels of
    sequence models (any shape) are relabelled per token; ``-100`` (padding) stays ``-100``."""
    if exclude_true:
        if num_classes < 2:
            raise InvalidInputError("wrong labels need at least 2 classes")
        shift = torch.randint(1, num_classes, y.shape, generator=generator).to(y.device)
        out = (y + shift) % num_classes
    else:
        out = torch.randint(0, num_classes, y.shape, generator=generator).to(y.device)
    return torch.where(y == -100, y, out)


def relabelled_loss(model: torch.nn.Module, task: Task, batch: Any, labels: torch.Tensor) -> torch.Tensor:
    """Per-sample loss (B,) of ``batch`` with its targets replaced by ``labels``: cross-entropy of the logits for
    class labels (over :meth:`Task.label_logits`); the task's own loss on the relabelled batch for token labels (a seq2seq decoder is then
    teacher-forced on the random transcript, as training on a wrong transcript would be)."""
    if labels.ndim == 1:
        logits = task.label_logits(model, batch)
        return F.cross_entropy(logits, labels.to(logits.device), reduction="none")
    return task.per_sample_loss(model, task.with_labels(batch, labels))


def check_finite_loss(loss: torch.Tensor, *, strategy: str, desc: str, step: int, lr: float) -> None:
    """The one finite-loss check every training loop runs before ``backward``: a NaN/inf loss raises
    :class:`NonFiniteError` (and :meth:`UnlearningStrategy.unlearn` then hands back no model) instead of
    stepping into NaN weights."""
    if not bool(torch.isfinite(loss.detach()).all()):
        value = loss.detach().reshape(-1)[0].item() if loss.numel() else float("nan")
        raise NonFiniteError(f"{strategy}: the {desc} loss became {value} at step {step}; lower lr (now {lr})")


class Run:
    """Everything one :meth:`UnlearningStrategy.unlearn` call needs: data, weights, budget, seeded batches."""

    def __init__(
        self,
        *,
        task: Task,
        forget: Any,
        retain: Any,
        weights: torch.Tensor | None,
        steps: int | None,
        epochs: float | None,
        lr: float,
        device: torch.device,
        seed: int,
        progress: bool,
        batch_size: int,
        optimizer: str,
        momentum: float,
        weight_decay: float,
        original: torch.nn.Module,
        strategy_name: str,
        until: StoppingRule | None = None,
        replicas: Replicas | None = None,
    ) -> None:
        self.task = task
        self.forget_raw, self.retain_raw = forget, retain
        self.forget = as_dataset(forget) if forget is not None else None
        self.retain = as_dataset(retain) if retain is not None else None
        self.weights = weights
        self.steps, self.epochs, self.lr = steps, epochs, lr
        self.device, self.seed, self.progress = device, seed, progress
        self.batch_size = batch_size
        self.optimizer_name, self.momentum, self.weight_decay = optimizer, momentum, weight_decay
        self.original = original  # the caller's model; read-only
        self.strategy_name = strategy_name
        self.history: list[float] = []
        #: the ``until=`` stopping rule, checked by :meth:`train`; ``global_step`` counts every optimizer step
        self.until = until
        self.global_step = 0
        #: set under a multi-process group: :meth:`train` averages a plain (unwrapped) model's gradients across processes
        self.replicas = replicas
        self.generator = torch.Generator().manual_seed(seed)
        self._epoch_counter = itertools.count()

    # ----------------------------------------------------------------------------------------- data
    def _loader(self, which: str, *, shuffle: bool, indexed: bool) -> DataLoader:
        ds, raw = (self.forget, self.forget_raw) if which == "forget" else (self.retain, self.retain_raw)
        if ds is None:
            raise InvalidInputError(f"strategy {self.strategy_name!r} needs retain data; pass retain_loader= or retain_data=")
        collate = collate_of(raw)
        if indexed:
            ds = IndexedDataset(ds)

            def collate_indexed(items: list[tuple[Any, int]]) -> tuple[Any, torch.Tensor]:
                return collate([it for it, _ in items]), torch.tensor([i for _, i in items], dtype=torch.long)

            collate_fn: Callable[[list[Any]], Any] = collate_indexed
        else:
            collate_fn = collate
        gen = torch.Generator().manual_seed(self.seed * 100_003 + next(self._epoch_counter)) if shuffle else None
        return DataLoader(ds, batch_size=self.batch_size, shuffle=shuffle, generator=gen, collate_fn=collate_fn)

    def prepare(self, batch: Any) -> Any:
        """A collated batch as a tuple (not list) on the run's device."""
        if isinstance(batch, list):
            batch = tuple(batch)
        return self.task.to_device(batch, self.device)

    def forget_epoch_indexed(self, *, shuffle: bool = True) -> Iterator[tuple[Any, torch.Tensor | None, torch.Tensor]]:
        """One pass over the forget set: ``(batch, weights or None, positions in the forget set)``."""
        for item, idx in self._loader("forget", shuffle=shuffle, indexed=True):
            w = None if self.weights is None else self.weights[idx].to(self.device)
            yield self.prepare(item), w, idx

    def forget_epoch(self, *, shuffle: bool = True) -> Iterator[tuple[Any, torch.Tensor | None]]:
        """One pass over the forget set: ``(batch, weights or None)`` on the run's device."""
        for batch, w, _ in self.forget_epoch_indexed(shuffle=shuffle):
            yield batch, w

    def forget_stream_indexed(self) -> Iterator[tuple[Any, torch.Tensor | None, torch.Tensor]]:
        """Endless reshuffled ``(batch, weights, positions)`` forget batches."""
        while True:
            yield from self.forget_epoch_indexed()

    def retain_epoch(self, *, shuffle: bool = True) -> Iterator[Any]:
        """One pass over the retain set."""
        for item in self._loader("retain", shuffle=shuffle, indexed=False):
            yield self.prepare(item)

    def forget_stream(self) -> Iterator[tuple[Any, torch.Tensor | None]]:
        """Endless reshuffled forget batches."""
        while True:
            yield from self.forget_epoch()

    def retain_stream(self) -> Iterator[Any]:
        """Endless reshuffled retain batches."""
        while True:
            yield from self.retain_epoch()

    def batches_per_epoch(self, which: str = "forget") -> int:
        ds = self.forget if which == "forget" else self.retain
        if ds is None:
            raise InvalidInputError(f"strategy {self.strategy_name!r} needs retain data; pass retain_loader= or retain_data=")
        return max(1, -(-len(ds) // self.batch_size))  # type: ignore[arg-type]

    def num_steps(self, default_epochs: float, *, which: str = "forget") -> int:
        """The step budget: ``steps`` if given, else ``epochs`` (or the method's default) passes over ``which``."""
        if self.steps is not None:
            return self.steps
        epochs = self.epochs if self.epochs is not None else default_epochs
        return max(1, int(round(epochs * self.batches_per_epoch(which))))

    def forget_loss(self, model: torch.nn.Module, batch: Any, weights: torch.Tensor | None) -> torch.Tensor:
        """The (weighted) task loss on a forget batch: ``sum w_i l_i / sum w_i``."""
        return self.task.loss(model, batch, weights=weights)

    def num_classes(self, model: torch.nn.Module) -> int:
        batch, _ = next(iter(self.forget_epoch(shuffle=False)))
        n = self.task.num_classes(model, batch)
        if n is None:
            raise InvalidInputError(f"strategy {self.strategy_name!r} needs a task with a fixed label space (for a "
                                    "contrastive model: task=ContrastiveTask(class_prompts=[...], tokenizer=processor))")
        return n

    # ----------------------------------------------------------------------------------------- training
    def make_optimizer(self, params: list[torch.nn.Parameter], *, lr: float | None = None) -> torch.optim.Optimizer:
        lr = self.lr if lr is None else lr
        if self.optimizer_name == "sgd":
            return torch.optim.SGD(params, lr=lr, momentum=self.momentum, weight_decay=self.weight_decay)
        if self.optimizer_name == "adam":
            return torch.optim.Adam(params, lr=lr, weight_decay=self.weight_decay)
        if self.optimizer_name == "adamw":
            return torch.optim.AdamW(params, lr=lr, weight_decay=self.weight_decay)
        raise InvalidInputError(f"optimizer must be 'sgd', 'adam' or 'adamw', got {self.optimizer_name!r}")

    @staticmethod
    def trainable(model: torch.nn.Module) -> list[torch.nn.Parameter]:
        params = [p for p in model.parameters() if p.requires_grad]
        if not params:
            raise InvalidInputError("the model has no trainable parameters (every parameter has requires_grad=False)")
        return params

    def train(
        self,
        model: torch.nn.Module,
        loss_fn: Callable[[int], torch.Tensor],
        *,
        num_steps: int,
        desc: str,
        optimizer: torch.optim.Optimizer | None = None,
        before_step: Callable[[], None] | None = None,
        stoppable: bool = True,
        max_grad_norm: float | None = None,
    ) -> None:
        """``num_steps`` optimizer steps of ``loss_fn(step)``; records the losses in ``history``.

        ``before_step`` runs between ``backward`` and ``optimizer.step`` (gradient masks, e.g. SalUn). Under a
        multi-process group a plain model's gradients are averaged over the processes before it, and rank 0's
        buffers are copied to every replica after each step (:class:`erasus.distributed.data_parallel.Replicas`).
        With an ``until=`` rule, a ``stoppable`` phase (a forgetting phase) checks the probe every
        ``until["every"]`` optimizer steps and after its last step, and ends as soon as the target is met; later
        stoppable phases are then skipped. Phases that restore utility after forgetting (retain repair) pass
        ``stoppable=False`` and run their whole budget. ``max_grad_norm`` clips the total L2 norm of the
        stepped gradients after ``before_step``.

        A DeepSpeed ZeRO-3 engine is stepped through ``engine.backward`` / ``engine.step`` with its own optimizer
        given this run's hyperparameters and a fresh state (:class:`erasus.distributed.zero3.EngineSession`);
        its gradients are partitioned inside that optimizer, so ``optimizer=`` (a method's own optimizer over
        some parameters) and ``before_step`` (gradient edits) are refused, and the clipping is the engine's.
        """
        from tqdm.auto import tqdm

        rule = self.until if stoppable else None
        if rule is not None and rule.met:
            return
        if world_size() > 1:
            # a rank that runs one step more than the others would wait forever in a collective
            all_ranks_agree(num_steps, what=f"the number of {self.strategy_name} steps ({desc})")
        if wrapper_kind(model) == "deepspeed":
            self._train_engine(model, loss_fn, num_steps=num_steps, desc=desc, optimizer=optimizer,
                               before_step=before_step, rule=rule, max_grad_norm=max_grad_norm)
            return
        opt = optimizer or self.make_optimizer(self.trainable(model))
        stepped = [p for group in opt.param_groups for p in group["params"]]
        # a DDP / FSDP2 wrapper syncs in backward; a module trained inside one (RMU under DDP) does not
        sync = self.replicas is not None and wrapper_kind(model) is None
        model.train()
        bar = tqdm(range(num_steps), desc=f"{self.strategy_name}: {desc}", disable=not self.progress, leave=False)
        for step in bar:
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(step)
            check_finite_loss(loss, strategy=self.strategy_name, desc=desc, step=step, lr=self.lr)
            loss.backward()
            if sync:
                self.replicas.average_gradients(stepped)  # type: ignore[union-attr]
            if before_step is not None:
                before_step()
            if max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(stepped, max_grad_norm)
            opt.step()
            if sync:
                self.replicas.broadcast(model, buffers_only=True)  # type: ignore[union-attr]
            if self._record(loss, bar, rule, model, step, num_steps):
                break

    def _record(self, loss: torch.Tensor, bar: Any, rule: StoppingRule | None, model: torch.nn.Module, step: int,
                num_steps: int) -> bool:
        """Log one step's loss; True when the stopping rule says the phase is over."""
        value = float(loss.detach())
        self.history.append(value)
        bar.set_postfix(loss=f"{value:.4f}", refresh=False)
        self.global_step += 1
        return rule is not None and (rule.due(self.global_step) or step == num_steps - 1) \
            and rule.check(model, step=self.global_step)

    def _train_engine(self, engine: Any, loss_fn: Callable[[int], torch.Tensor], *, num_steps: int, desc: str,
                      optimizer: torch.optim.Optimizer | None, before_step: Callable[[], None] | None,
                      rule: StoppingRule | None, max_grad_norm: float | None) -> None:
        """:meth:`train` on a DeepSpeed ZeRO-3 engine (its own optimizer, backward and step)."""
        from tqdm.auto import tqdm

        from ..distributed.zero3 import EngineSession

        if optimizer is not None or before_step is not None:
            what = "builds its own optimizer over chosen parameters" if optimizer is not None \
                else "edits the gradients before each step"
            raise ErasusTypeError(
                f"strategy {self.strategy_name!r} {what} ({desc}), which a DeepSpeed ZeRO-3 engine cannot do: its "
                "gradients and optimizer are partitioned inside the engine. Prepare the model with FSDP2 "
                "(configs/accelerate/fsdp.yaml) for this method")
        self.trainable(engine)  # refuses a model with nothing to train
        # the optimizer erasus would build: its kind and hyperparameters are given to the engine's
        session = EngineSession(engine, self.make_optimizer([torch.nn.Parameter(torch.zeros(1))]),
                                max_grad_norm=max_grad_norm, strategy=self.strategy_name)
        try:
            engine.train()
            bar = tqdm(range(num_steps), desc=f"{self.strategy_name}: {desc}", disable=not self.progress,
                       leave=False)
            for step in bar:
                loss = loss_fn(step)
                check_finite_loss(loss, strategy=self.strategy_name, desc=desc, step=step, lr=self.lr)
                session.step(loss)
                if self._record(loss, bar, rule, engine, step, num_steps):
                    break
        finally:
            session.close()



class UnlearningStrategy(abc.ABC):
    """Base class of every unlearning method.

    Options given to the constructor (the method's hyperparameters, listed in ``defaults``, plus ``task``,
    ``batch_size``, ``optimizer`` (``"sgd"|"adam"|"adamw"``), ``momentum``, ``weight_decay``) can be
    overridden per call through ``unlearn(**kw)``. ``lr`` and ``default_epochs`` in ``defaults`` are the
    budget used when ``unlearn`` gets no ``lr`` / ``steps`` / ``epochs``. After a call, ``history_`` holds the
    loss of every optimizer step and ``info_`` what the method reports (e.g. epsilon spent, retrained shards).
    """

    #: the method's hyperparameters and their (paper) defaults; ``lr`` and ``epochs`` are the budget defaults
    defaults: ClassVar[dict[str, Any]] = {}
    #: whether the method reads the retain set (required) or may use it (optional)
    retain: ClassVar[str] = "optional"  # "required" | "optional" | "unused"
    #: whether the method reads the forget set; "optional" ones (fine-tuning) run on the retain set alone
    forget_set: ClassVar[str] = "required"  # "required" | "optional"
    #: whether the method trains with gradients (and so can run through LoRA adapters)
    gradient_based: ClassVar[bool] = True
    #: whether ``unlearn(until=...)`` applies: the method trains through :meth:`Run.train` (None: ``gradient_based``)
    supports_until: ClassVar[bool | None] = None
    #: whether the method runs data-parallel under a multi-process ``torch.distributed`` group (each rank its
    #: shard, gradients averaged in :meth:`Run.train`); False where it computes data statistics outside that loop
    data_parallel: ClassVar[bool] = True
    registry_name: ClassVar[str] = "strategy"

    def __init__(self, **options: Any) -> None:
        self.options = self._merge(options, base={**_COMMON, **self.defaults})
        self._given = set(options)
        self.history_: History = History()
        self.info_: dict[str, Any] = {}

    def _merge(self, options: dict[str, Any], *, base: dict[str, Any]) -> dict[str, Any]:
        allowed = set(_COMMON) | set(self.defaults)
        unknown = sorted(set(options) - allowed)
        if unknown:
            raise InvalidInputError(
                f"unknown option(s) {unknown} for strategy {self.registry_name!r}; known options: {sorted(allowed)}"
            )
        return {**base, **options}

    def __repr__(self) -> str:
        changed = {k: self.options[k] for k in sorted(self._given)}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in changed.items())})"

    # ------------------------------------------------------------------------------------------ API
    def unlearn(
        self,
        *,
        model: torch.nn.Module,
        forget_loader: Any = None,
        forget_data: Any = None,
        retain_loader: Any = None,
        retain_data: Any = None,
        weights: torch.Tensor | np.ndarray | None = None,
        steps: int | None = None,
        epochs: float | None = None,
        lr: float | None = None,
        inplace: bool = False,
        device: torch.device | str | None = None,
        seed: int = 0,
        progress: bool = True,
        lora: Any = None,
        until: Mapping[str, Any] | None = None,
        **kw: Any,
    ) -> torch.nn.Module:
        """Unlearn ``forget`` from ``model`` and return the unlearned model.

        Args:
            model: any ``nn.Module`` (classifier, HF model, ...).
            forget_loader: the forget set (``DataLoader``, ``Dataset``, tensors or ``(x, y)`` arrays).
            forget_data: another name for ``forget_loader``.
            retain_loader: the retain set, for methods that use one.
            retain_data: another name for ``retain_loader``.
            weights: per-sample weights aligned with the forget set order (a CRAIG coreset's ``Selection.weights``);
                forget losses become ``sum w_i l_i / sum w_i``.
            steps: optimizer-step budget (method default when both ``steps`` and ``epochs`` are None).
            epochs: passes over the forget set instead of ``steps``.
            lr: learning rate (method default when None).
            inplace: modify ``model`` itself; it is restored bit for bit if the call raises.
            device: where to run (default: the model's device).
            seed: seeds shuffling, random labels, noise and re-initialisations.
            progress: show a tqdm progress bar.
            lora: run through LoRA adapters (a ``peft.LoraConfig`` or a dict of its options) and merge them back.
            until: a stopping rule, e.g. ``{"metric": "forget_accuracy", "below": 0.05}`` (see
                :mod:`erasus.strategies.until`): train until the probe meets it, ``steps`` / ``epochs`` being the
                cap. ``history_.checks`` holds the trajectory, ``info_["until"]`` whether the target was reached;
                a :class:`~erasus.errors.TargetNotReachedWarning` says when the cap came first.
            **kw: per-call overrides of the method's options.
        """
        if not isinstance(model, torch.nn.Module) and "unet" in (getattr(model, "components", None) or {}):
            from ..models.diffusion import StableDiffusionWrapper

            model = StableDiffusionWrapper(model)  # a diffusers pipeline: its modules, behind the diffusion task
        if not isinstance(model, torch.nn.Module):
            raise ErasusTypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        forget = _one_of("forget", forget_loader, forget_data, required=self.forget_set == "required")
        retain = _one_of("retain", retain_loader, retain_data, required=False)
        if retain is None and self.retain == "required":
            raise InvalidInputError(
                f"strategy {self.registry_name!r} needs the retain set; pass retain_loader= or retain_data="
            )
        opts = self._merge(kw, base=self.options)
        if steps is not None and (not isinstance(steps, (int, np.integer)) or steps <= 0):
            raise InvalidInputError(f"steps must be a positive integer, got {steps!r}")
        if epochs is not None and not (isinstance(epochs, (int, float)) and epochs > 0):
            raise InvalidInputError(f"epochs must be a positive number, got {epochs!r}")
        lr_value = float(lr if lr is not None else opts.get("lr", 1e-3))
        if not np.isfinite(lr_value) or lr_value < 0:
            raise InvalidInputError(f"lr must be a finite non-negative number, got {lr!r}")
        batch_size = opts["batch_size"]
        if isinstance(forget_loader, DataLoader) and "batch_size" not in kw and "batch_size" not in self._given:
            batch_size = forget_loader.batch_size or batch_size
        if not isinstance(batch_size, (int, np.integer)) or batch_size <= 0:
            raise InvalidInputError(f"batch_size must be a positive integer, got {batch_size!r}")
        if lora is not None and not self.gradient_based:
            raise InvalidInputError(f"lora= applies to gradient-based strategies; {self.registry_name!r} is not one")

        if forget is None and weights is not None:
            raise InvalidInputError("weights= weigh forget samples; there is no forget set")
        forget_ds = as_dataset(forget if forget is not None else retain)
        n_forget = len(forget_ds)  # type: ignore[arg-type]
        if n_forget == 0:
            raise InvalidInputError("the forget set is empty" if forget is not None else "the retain set is empty")
        w = _check_weights(weights, n_forget) if forget is not None else None
        task = get_task(opts["task"]) if opts["task"] is not None else infer_task(model, forget_ds)
        wrapper = check_supported(model)
        world = world_size()
        if world > 1 and not self.data_parallel:
            raise InvalidInputError(
                f"strategy {self.registry_name!r} computes statistics of its data outside the shared training loop, "
                f"so under this {world}-process torch.distributed group each rank would unlearn differently; run it "
                "in one process on the whole forget set, or pick a data-parallel strategy (gradient_ascent, "
                "grad_diff, scrub, salun, npo, ...)")
        if world > 1 and until is not None:
            raise InvalidInputError(
                f"until= evaluates its probe on each rank's own data, so the {world} processes of this "
                "torch.distributed group could stop at different steps and wait forever; pass steps= instead")
        if wrapper is not None:
            # DDP / FSDP2 (accelerator.prepare): trained where it is, through the wrapper that syncs gradients
            if not inplace:
                raise InvalidInputError(f"the model is wrapped for multi-process training ({wrapper}); a copy of it "
                                        "would need its own process-group wrapper: pass inplace=True (the model "
                                        "is restored if the call raises)")
            if lora is not None:
                raise InvalidInputError(f"lora= wraps the model in adapters, which must happen before the {wrapper} "
                                        "wrapper: apply peft first, then accelerator.prepare")
            if device is not None and torch.device(device) != compute_device(model):
                raise InvalidInputError(f"device={device!r}, but the {wrapper}-wrapped model computes on "
                                        f"{compute_device(model)}; a wrapped model is not moved")
        try:
            first = next(model.parameters())
            model_device = first.device
        except StopIteration:
            model_device = torch.device("cpu")
        if wrapper is not None:
            model_device = compute_device(model)
        run_device = torch.device(device) if device is not None else model_device
        _check_labels_before_work(task, model, forget, retain, model_device)
        rule = None
        if until is not None:
            rule = self.stopping_rule(until, task=task, forget=forget, retain=retain)
            rule.start(model)  # the caller's model, read-only: a rule that cannot be evaluated fails here

        was_training = model.training
        snapshot = _snapshot(model) if inplace else None
        work = model if inplace else copy.deepcopy(model)
        wrapped = None
        try:
            if wrapper is None:
                work.to(run_device)
            if lora is not None:
                wrapped = _wrap_lora(work, lora)
            # rank 0's starting weights on every replica (LoRA adapters are initialised from each rank's RNG)
            replicas = Replicas(wrapped if wrapped is not None else work, start=wrapper is None) if world > 1 else None
            run = Run(
                task=task,
                forget=forget,
                retain=retain,
                weights=w,
                steps=int(steps) if steps is not None else None,
                epochs=epochs,
                lr=lr_value,
                device=run_device,
                seed=int(seed),
                progress=progress,
                batch_size=int(batch_size),
                optimizer=opts["optimizer"],
                momentum=float(opts["momentum"]),
                weight_decay=float(opts["weight_decay"]),
                original=model,
                strategy_name=self.registry_name,
                until=rule,
                replicas=replicas,
            )
            if rule is not None:
                rule.cap = run.steps
                rule.restart_clock()
            self.info_ = {}
            method_opts = {k: v for k, v in opts.items() if k not in _COMMON and k != "lr"}
            fork_devices = [run_device] if run_device.type == "cuda" else []
            with torch.random.fork_rng(devices=fork_devices):
                torch.manual_seed(int(seed))
                result = self._unlearn(wrapped if wrapped is not None else work, run, **method_opts)
            if rule is not None:
                self._record_until(rule, run)
            if wrapped is not None:
                result = wrapped.merge_and_unload()
                wrapped = None
        except BaseException:
            # the steps and probes taken before the failure (e.g. a loss that became NaN) stay readable
            self.history_ = History(run.history, checks=rule.checks if rule is not None else None) \
                if "run" in locals() else History()
            if inplace:
                if wrapped is not None:
                    wrapped.unload()
                _restore(model, snapshot)
                model.train(was_training)
            raise
        self.history_ = History(run.history, checks=rule.checks, until=self.info_["until"]) if rule is not None \
            else History(run.history)
        result.train(was_training)
        return result

    def stopping_rule(self, until: Any, *, task: Any, forget: Any, retain: Any) -> StoppingRule:
        """``until`` validated for this strategy (no evaluation yet); raises before any work when it cannot apply."""
        if not (self.gradient_based if self.supports_until is None else self.supports_until):
            raise InvalidInputError(
                f"until= stops a gradient-training loop; strategy {self.registry_name!r} does not train through "
                "one (it has no steps to stop). Drop until= or pick a gradient strategy")
        return StoppingRule(until, task=task, forget=forget, retain=retain)

    def _record_until(self, rule: StoppingRule, run: Run) -> None:
        if len(rule.checks) == 1 and not rule.met:
            raise InvalidInputError(
                f"until=: strategy {self.registry_name!r} ran no stoppable training phase (its steps are not taken "
                "through the shared loop), so the rule was never checked; drop until=")
        if rule.cap is None and not rule.met:
            rule.cap = run.global_step
        self.info_["until"] = rule.summary()
        summary = self.info_["until"]
        if not rule.met:
            warnings.warn(
                f"{self.registry_name}: until target {rule.key} {summary['target']} not reached within the cap of "
                f"{run.global_step} steps (last value {summary['value']:.4g}); raise steps= / epochs= or lr=",
                TargetNotReachedWarning, stacklevel=3)

    @abc.abstractmethod
    def _unlearn(self, model: torch.nn.Module, run: Run, **options: Any) -> torch.nn.Module:
        """Unlearn in place on ``model`` (already a copy, or snapshotted) and return the result."""


def _one_of(name: str, loader: Any, data: Any, *, required: bool) -> Any:
    if loader is not None and data is not None:
        raise InvalidInputError(f"pass either {name}_loader= or {name}_data=, not both")
    value = loader if loader is not None else data
    if value is None and required:
        raise InvalidInputError(f"the {name} set is required; pass {name}_loader= or {name}_data=")
    return value


def _check_weights(weights: Any, n: int) -> torch.Tensor | None:
    if weights is None:
        return None
    if isinstance(weights, np.ndarray):
        weights = torch.from_numpy(np.ascontiguousarray(weights))
    if not isinstance(weights, torch.Tensor):
        raise ErasusTypeError(f"weights must be a tensor or numpy array, got {type(weights).__name__}")
    w = weights.detach().reshape(-1).to(torch.float32).cpu()
    if w.shape[0] != n:
        raise InvalidInputError(f"weights has {w.shape[0]} entries but the forget set has {n} samples")
    if not torch.isfinite(w).all():
        raise NonFiniteError("weights contain NaN or infinity")
    if (w < 0).any():
        raise InvalidInputError("weights must be non-negative")
    if float(w.sum()) <= 0:
        raise InvalidInputError("weights sum to zero: nothing would be forgotten")
    return w


def _dataset_labels(data: Any) -> torch.Tensor | None:
    """Class ids of a dataset when they can be read without loading its inputs (tensors, ``.targets``), else None."""
    ds = as_dataset(data)
    indices = None
    while isinstance(ds, torch.utils.data.Subset):
        idx = torch.as_tensor(list(ds.indices), dtype=torch.long)
        indices = idx if indices is None else idx[indices]
        ds = ds.dataset
    y = None
    tensors = getattr(ds, "tensors", None)
    if isinstance(ds, torch.utils.data.TensorDataset) and tensors is not None and len(tensors) == 2:
        y = tensors[1]
    else:
        targets = getattr(ds, "targets", None)
        if isinstance(targets, (torch.Tensor, np.ndarray, list)):
            y = torch.as_tensor(np.asarray(targets))
    if not isinstance(y, torch.Tensor) or y.dtype.is_floating_point or y.dtype == torch.bool or y.ndim != 1:
        return None
    return y if indices is None else y[indices]


def _check_labels_before_work(task: Task, model: torch.nn.Module, forget: Any, retain: Any,
                              device: torch.device) -> None:
    """Out-of-range class ids are refused before any step (the loss checks each batch too, for other datasets)."""
    from ..tasks.classification import ClassificationTask, check_label_range

    if not isinstance(task, ClassificationTask):
        return
    found = [(name, y) for name, data in (("forget", forget), ("retain", retain))
             if data is not None and (y := _dataset_labels(data)) is not None and y.numel()]
    if not found:
        return
    n = getattr(getattr(model, "config", None), "num_labels", None)
    if not (isinstance(n, int) and n > 0):
        data = forget if forget is not None else retain
        batch = task.to_device(collate_of(data)([as_dataset(data)[0]]), device)
        flags = [(m, m.training) for m in model.modules()]
        model.eval()  # a forward in train mode would move BatchNorm statistics
        try:
            with torch.no_grad():
                n = int(task.outputs(model, batch).shape[-1])
        finally:
            for m, flag in flags:
                m.training = flag
    for name, y in found:
        check_label_range(y, n, where=f" in the {name} set")


def _snapshot(model: torch.nn.Module) -> Any:
    if wrapper_kind(model) == "deepspeed":
        from ..distributed.zero3 import EngineSnapshot

        return EngineSnapshot(model)  # ZeRO-3 parameters are empty outside a forward: this rank's partitions
    return {
        "device": [(p, p.device) for p in itertools.chain(model.parameters(), model.buffers())],
        "state": {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict(keep_vars=False).items()},
        "requires_grad": {id(p): p.requires_grad for p in model.parameters()},
        # .grad is not in the state dict: without this a failed in-place call leaves stale gradients behind
        "grad": {id(p): None if p.grad is None else p.grad.detach().clone() for p in model.parameters()},
    }


def _restore(model: torch.nn.Module, snapshot: Any) -> None:
    if snapshot is None:
        return
    if not isinstance(snapshot, dict):
        snapshot.restore()
        return
    with torch.no_grad():
        for t, dev in snapshot["device"]:
            t.data = t.data.to(dev)
        model.load_state_dict(snapshot["state"])
    for p in model.parameters():
        p.requires_grad_(snapshot["requires_grad"].get(id(p), p.requires_grad))
        p.grad = snapshot["grad"].get(id(p))


def _wrap_lora(model: torch.nn.Module, lora: Any) -> Any:
    peft = require("peft", "llm", purpose="LoRA unlearning (lora=)")
    if isinstance(lora, peft.PeftConfig):
        config = lora
    elif isinstance(lora, dict):
        options = dict(lora)
        if "target_modules" not in options:
            targets = sorted(
                name for name, m in model.named_modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)) and name
            )
            if not targets:
                raise InvalidInputError("lora= found no Linear/Conv2d layers to adapt; pass target_modules explicitly")
            options["target_modules"] = targets
        try:
            config = peft.LoraConfig(**options)
        except TypeError as exc:
            raise InvalidInputError(f"invalid lora options {sorted(lora)}: {exc}") from None
    else:
        raise ErasusTypeError(f"lora must be a peft.LoraConfig or a dict of its options, got {type(lora).__name__}")
    return peft.get_peft_model(model, config)


def weighted(losses: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """``sum w_i l_i / sum w_i`` (or the mean): the one forget-loss reduction every method uses."""
    return reduce_loss(losses, weights)
