"""Amnesiac unlearning: subtract the recorded updates of the batches that held forget samples, or relabel."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import torch

from ..errors import ErasusTypeError, InvalidInputError
from ..registry import register_strategy
from .base import Run, UnlearningStrategy
from .random_label import random_label_step

__all__ = ["Amnesiac", "AmnesiacRecorder"]


class AmnesiacRecorder:
    """Records, during training, each batch's parameter update ``Delta theta_b`` and the sample ids it held.

    >>> rec = AmnesiacRecorder(model)
    >>> for (x, y), ids in loader:               # ids: training-set indices of the batch
    ...     loss = ...; loss.backward()
    ...     with rec.step(ids):
    ...         optimizer.step()

    Updates are stored on CPU (the paper's memory cost: one parameter-sized delta per batch that is kept).
    ``keep_ids`` limits storage to batches that contain one of those ids (the samples that may be forgotten).
    """

    def __init__(self, model: torch.nn.Module, *, keep_ids: Iterable[int] | None = None) -> None:
        self.model = model
        self.keep_ids = None if keep_ids is None else {int(i) for i in keep_ids}
        self.updates: list[tuple[frozenset[int], dict[str, torch.Tensor]]] = []

    @contextlib.contextmanager
    def step(self, ids: Sequence[int] | torch.Tensor | np.ndarray) -> Iterator[None]:
        id_set = frozenset(int(i) for i in (ids.tolist() if hasattr(ids, "tolist") else ids))
        if self.keep_ids is not None and not (id_set & self.keep_ids):
            yield
            return
        before = {n: p.detach().to("cpu", copy=True) for n, p in self.model.named_parameters()}
        yield
        after = {n: p.detach().cpu() for n, p in self.model.named_parameters()}
        self.updates.append((id_set, {n: after[n] - before[n] for n in before}))


@register_strategy("amnesiac")
class Amnesiac(UnlearningStrategy):
    """Amnesiac machine learning (Graves, Nagisetty & Ganesh, AAAI 2021), two variants from the paper:

    * ``mode="exact"`` (amnesiac unlearning): given the training-time per-batch updates recorded by an
      :class:`AmnesiacRecorder` (``updates=``) and the training-set ids of the forget samples (``forget_ids=``,
      aligned with the forget set), ``theta <- theta - sum_{b : B_b ∩ D_f != ∅} Delta theta_b``. Weights act as
      a mask here: a forget sample with weight 0 is kept (its batches are not subtracted).
    * ``mode="relabel"`` (the paper's "unlearning" by relabelling, usable without recorded updates): train on the
      forget set with random *incorrect* labels ``y' ~ U({0..C-1} \\ {y})``,
      ``min sum_i w_i CE(f(x_i), y'_i) / sum_i w_i (+ alpha * E_r[CE])``; the paper uses about one epoch.

    ``mode="auto"`` picks ``exact`` when ``updates`` are given. ``repair_epochs`` optionally fine-tunes on the
    retain set afterwards (the paper notes a little retraining restores accuracy). Defaults: relabel lr 0.01,
    1 epoch, ``alpha = 1``.
    """

    defaults = {
        "lr": 0.01,
        "mode": "auto",
        "updates": None,
        "forget_ids": None,
        "alpha": 1.0,
        "repair_epochs": 0.0,
        "default_epochs": 1,
    }
    retain = "optional"

    def _unlearn(
        self,
        model: torch.nn.Module,
        run: Run,
        *,
        mode: str,
        updates: AmnesiacRecorder | Sequence[tuple[Any, dict[str, torch.Tensor]]] | None,
        forget_ids: Sequence[int] | np.ndarray | torch.Tensor | None,
        alpha: float,
        repair_epochs: float,
        default_epochs: float,
    ) -> torch.nn.Module:
        if mode not in ("auto", "exact", "relabel"):
            raise InvalidInputError(f"mode must be 'auto', 'exact' or 'relabel', got {mode!r}")
        if mode == "auto":
            mode = "exact" if updates is not None else "relabel"
        self.info_["mode"] = mode
        if mode == "exact":
            self._subtract(model, run, updates, forget_ids)
        else:
            num_classes = run.num_classes(model)
            forget = run.forget_stream()
            retain = run.retain_stream() if run.retain is not None else None
            run.train(
                model,
                lambda _: random_label_step(model, run, forget, retain, num_classes=num_classes, exclude_true=True, alpha=alpha),
                num_steps=run.num_steps(default_epochs),
                desc="relabel forget",
            )
        if repair_epochs > 0:
            if run.retain is None:
                raise InvalidInputError("repair_epochs > 0 needs the retain set")
            stream = run.retain_stream()
            steps = max(1, int(round(repair_epochs * run.batches_per_epoch("retain"))))
            run.train(model, lambda _: run.task.loss(model, next(stream)), num_steps=steps, desc="repair on retain",
                      stoppable=False)
        return model

    def _subtract(self, model: torch.nn.Module, run: Run, updates: Any, forget_ids: Any) -> None:
        if updates is None:
            raise InvalidInputError("mode='exact' needs updates= (an AmnesiacRecorder or its .updates list)")
        records = updates.updates if isinstance(updates, AmnesiacRecorder) else list(updates)
        if forget_ids is None:
            raise InvalidInputError("mode='exact' needs forget_ids=: the training-set ids of the forget samples")
        ids = np.asarray(forget_ids.cpu() if isinstance(forget_ids, torch.Tensor) else forget_ids).reshape(-1)
        if ids.shape[0] != len(run.forget):  # type: ignore[arg-type]
            raise InvalidInputError(f"forget_ids has {ids.shape[0]} entries but the forget set has {len(run.forget)}")
        if run.weights is not None:
            ids = ids[run.weights.numpy() > 0]
        targets = {int(i) for i in ids}
        params = dict(model.named_parameters())
        hit = 0
        with torch.no_grad():
            for batch_ids, delta in records:
                if not isinstance(delta, dict):
                    raise ErasusTypeError("each recorded update must be (ids, {parameter name: delta tensor})")
                if not (set(batch_ids) & targets):
                    continue
                hit += 1
                for name, d in delta.items():
                    if name not in params:
                        raise InvalidInputError(f"recorded update for unknown parameter {name!r}")
                    params[name].sub_(d.to(params[name].device, params[name].dtype))
        self.info_["subtracted_batches"] = hit
