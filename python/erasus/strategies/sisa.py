"""SISA: sharded, isolated, sliced, aggregated training with exact retraining of the affected shards."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Subset

from ..data import as_dataset, as_loader, subset
from ..errors import ErasusTypeError, InvalidInputError
from ..registry import register_strategy
from ..tasks import Task, get_task, infer_task
from .base import Run, UnlearningStrategy, check_finite_loss, reinitialize

__all__ = ["SISA", "SISAEnsemble"]


class SISAEnsemble(torch.nn.Module):
    """``S`` constituent models, one per shard, aggregated by majority vote.

    ``forward(x)`` returns the vote fractions ``(B, C)``: ``argmax`` is the majority label (ties go to the lowest
    class index). Keeps what exact unlearning needs: each shard's slices (training-set ids), the per-slice
    checkpoints (state after training on slices ``0..r``) and the initial state.
    """

    def __init__(
        self,
        models: Sequence[torch.nn.Module],
        slices: list[list[np.ndarray]],
        checkpoints: list[list[dict[str, torch.Tensor]]],
        initial: list[dict[str, torch.Tensor]],
        train_data: Any,
        num_classes: int,
        seed: int,
    ) -> None:
        super().__init__()
        self.seed = int(seed)
        self.models = torch.nn.ModuleList(models)
        self.slices = slices
        self.checkpoints = checkpoints
        self.initial = initial
        self.train_data = train_data
        self.num_classes = int(num_classes)

    def shard_of(self) -> dict[int, tuple[int, int]]:
        """Training-set id -> (shard, slice)."""
        return {int(i): (s, r) for s, sl in enumerate(self.slices) for r, ids in enumerate(sl) for i in ids}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        votes = torch.zeros(x.shape[0], self.num_classes, device=x.device)
        for m in self.models:
            pred = m(x)
            pred = getattr(pred, "logits", pred).argmax(-1)
            votes.scatter_add_(1, pred[:, None], torch.ones_like(pred, dtype=votes.dtype)[:, None])
        return votes / len(self.models)


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


@register_strategy("sisa")
class SISA(UnlearningStrategy):
    """SISA training (Bourtoule et al., "Machine Unlearning", IEEE S&P 2021).

    :meth:`fit` splits the training set into ``shards`` disjoint shards and each shard into ``slices`` slices;
    constituent model ``k`` is trained incrementally, for ``epochs_per_slice`` epochs on slices ``0..r`` at step
    ``r``, saving a checkpoint after every slice. Predictions aggregate by majority vote. :meth:`unlearn` removes
    the forget samples (``forget_ids=`` training-set ids, or a :func:`erasus.data.subset` of the training data
    as the forget set) from their slices and, for each affected shard only, restores the checkpoint before the
    earliest affected slice and retrains the remaining slices: exact unlearning, ``info_["retrained_shards"]``
    lists the shards touched. Weights act as a mask (weight-0 samples are kept). Defaults: 5 shards, 4 slices,
    5 epochs per slice, SGD lr 0.05.
    """

    data_parallel = False

    defaults = {"lr": 0.05, "shards": 5, "slices": 4, "epochs_per_slice": 5, "forget_ids": None, "model_factory": None}
    retain = "unused"
    gradient_based = False

    def fit(self, *, model: torch.nn.Module, train_data: Any, seed: int = 0, progress: bool = True) -> SISAEnsemble:
        """Train the ensemble on ``train_data``; ``model`` is the architecture (re-initialised per shard)."""
        o = self.options
        shards, slices = int(o["shards"]), int(o["slices"])
        dataset = as_dataset(train_data)
        n = len(dataset)  # type: ignore[arg-type]
        if shards < 1 or slices < 1 or shards * slices > n:
            raise InvalidInputError(f"need 1 <= shards * slices <= n ({n}); got shards={shards}, slices={slices}")
        task = get_task(o["task"]) if o["task"] is not None else infer_task(model, dataset)
        perm = np.random.default_rng(seed).permutation(n)
        shard_ids = np.array_split(perm, shards)
        all_slices = [[np.sort(s) for s in np.array_split(ids, slices)] for ids in shard_ids]
        models, checkpoints, initial = [], [], []
        from tqdm.auto import tqdm

        for k in tqdm(range(shards), desc="sisa: train shards", disable=not progress, leave=False):
            m = self._fresh(model, seed * 1000 + k)
            initial.append(_state(m))
            checkpoints.append(self._train_slices(m, task, dataset, all_slices[k], 0, [], seed * 1000 + k))
            models.append(m.eval())
        num_classes = task.num_classes(models[0], next(iter(as_loader(dataset, batch_size=2))))
        return SISAEnsemble(models, all_slices, checkpoints, initial, dataset, int(num_classes or 0), seed)

    def _fresh(self, model: torch.nn.Module, seed: int) -> torch.nn.Module:
        factory: Callable[[], torch.nn.Module] | None = self.options["model_factory"]
        if factory is None:
            return reinitialize(model, seed=seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return factory()

    def _train_slices(
        self,
        model: torch.nn.Module,
        task: Task,
        dataset: Any,
        slices: list[np.ndarray],
        start: int,
        checkpoints: list[dict[str, torch.Tensor]],
        seed: int,
        *,
        lr: float | None = None,
    ) -> list[dict[str, torch.Tensor]]:
        """Train on slices ``0..r`` for ``r = start..R-1``, appending a checkpoint after each (``lr``: the
        per-call rate, default the configured one)."""
        o = self.options
        lr = float(o["lr"]) if lr is None else lr
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=o["momentum"], weight_decay=o["weight_decay"])
        device = next(model.parameters()).device
        model.train()
        for r in range(start, len(slices)):
            ids = np.concatenate(slices[: r + 1])
            if len(ids) == 0:
                checkpoints.append(_state(model))
                continue
            for epoch in range(int(o["epochs_per_slice"])):
                loader = as_loader(subset(dataset, ids), batch_size=o["batch_size"], shuffle=True, seed=seed + 7919 * r + epoch)
                for step, batch in enumerate(loader):
                    opt.zero_grad(set_to_none=True)
                    loss = task.loss(model, task.to_device(tuple(batch), device))
                    check_finite_loss(loss, strategy="sisa", desc=f"slice {r} epoch {epoch}", step=step, lr=lr)
                    loss.backward()
                    opt.step()
            checkpoints.append(_state(model))
        model.eval()
        return checkpoints

    def _unlearn(self, model: torch.nn.Module, run: Run, *, forget_ids: Any, **_: Any) -> torch.nn.Module:
        if not isinstance(model, SISAEnsemble):
            raise ErasusTypeError(f"sisa unlearns a SISAEnsemble built by SISA().fit(...); got {type(model).__name__}")
        if forget_ids is None:
            if isinstance(run.forget, Subset) and run.forget.dataset in (model.train_data, run.original.train_data):
                forget_ids = run.forget.indices
            else:
                raise InvalidInputError(
                    "sisa needs to know which training samples to forget: pass forget_ids= (training-set ids) or "
                    "forget_data=erasus.data.subset(ensemble.train_data, ids)"
                )
        ids = np.asarray(forget_ids.cpu() if isinstance(forget_ids, torch.Tensor) else forget_ids).reshape(-1)
        if ids.shape[0] != len(run.forget):  # type: ignore[arg-type]
            raise InvalidInputError(f"forget_ids has {ids.shape[0]} entries but the forget set has {len(run.forget)}")
        if run.weights is not None:
            ids = ids[run.weights.numpy() > 0]
        where = model.shard_of()
        unknown = [int(i) for i in ids if int(i) not in where]
        if unknown:
            raise InvalidInputError(f"forget ids {unknown[:10]} are not in the ensemble's training data (or already forgotten)")
        earliest: dict[int, int] = {}
        for i in ids:
            s, r = where[int(i)]
            earliest[s] = min(earliest.get(s, r), r)
        drop = {int(i) for i in ids}
        task = run.task
        for s, r in sorted(earliest.items()):
            model.slices[s] = [np.array([i for i in sl if int(i) not in drop], dtype=np.int64) for sl in model.slices[s]]
            m = model.models[s]
            m.load_state_dict(model.checkpoints[s][r - 1] if r > 0 else model.initial[s])
            model.checkpoints[s] = model.checkpoints[s][:r]
            self._train_slices(m, task, model.train_data, model.slices[s], r, model.checkpoints[s], model.seed * 1000 + s,
                               lr=run.lr)
        self.info_["retrained_shards"] = sorted(earliest)
        self.info_["restarted_from_slice"] = dict(sorted(earliest.items()))
        return model
