"""Bad teaching: distil from an incompetent teacher on the forget set and a competent one on the retain set."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import ConcatDataset, DataLoader, Subset

from ..data import IndexedDataset, collate_of
from ..errors import ErasusTypeError, InvalidInputError
from ..registry import register_strategy
from .base import Run, UnlearningStrategy, per_sample_kl, reinitialize

__all__ = ["BadTeacher"]


def _mixed_batches(run: Run, retain_ids: torch.Tensor) -> tuple[Iterator[tuple[Any, torch.Tensor]], int]:
    """Endless epochs over the forget set shuffled together with ``retain[retain_ids]`` (the reference's
    ``UnLearningData`` + ``DataLoader(shuffle=True)``): ``(batch, positions)``, positions ``< n_forget`` being
    forget samples. Batches are collated with the forget data's collate function."""
    if run.retain is None:
        raise InvalidInputError("bad_teacher needs the retain set; pass retain_loader= or retain_data=")
    mixed = IndexedDataset(ConcatDataset([run.forget, Subset(run.retain, retain_ids.tolist())]))
    collate = collate_of(run.forget_raw)

    def collate_indexed(items: list[tuple[Any, int]]) -> tuple[Any, torch.Tensor]:
        return collate([it for it, _ in items]), torch.tensor([i for _, i in items], dtype=torch.long)

    loader = DataLoader(mixed, batch_size=run.batch_size, shuffle=True, collate_fn=collate_indexed,
                        generator=torch.Generator().manual_seed(run.seed * 100_003 + 17))

    def stream() -> Iterator[tuple[Any, torch.Tensor]]:
        while True:
            for batch, idx in loader:
                yield run.prepare(batch), idx

    return stream(), len(loader)


@register_strategy("bad_teacher")
class BadTeacher(UnlearningStrategy):
    """Bad teacher (Chundawat et al., "Can Bad Teaching Induce Forgetting?", AAAI 2023).

    With ``l_u = 1`` for forget and ``0`` for retain samples, the student (initialised from the trained model)
    minimises ``KL(l_u * T_s(x) + (1 - l_u) * T_d(x) || S(x))`` at temperature ``T``, where ``T_d`` is the
    competent teacher (the trained model) and ``T_s`` an incompetent one (randomly initialised; or pass
    ``bad_teacher=``). As in the official code (vikram2000b/bad-teaching-unlearning, ``unlearn.py``
    ``blindspot_unlearner`` / ``UnLearningData`` and the CIFAR notebook), the data is the forget set shuffled
    together with a random ``retain_fraction`` (30%) of the retain set, one pass over it per epoch, one student
    forward per batch. Forget KL terms carry the coreset weights rescaled to mean 1 over the forget samples with
    positive weight, ``loss = sum_i v_i KL_i / sum_i v_i`` over the batch (``v = 1`` for retain samples).

    Defaults from the paper and code: temperature 1, Adam lr 1e-4, 1 epoch, ``retain_fraction = 0.3``.
    Deviation: the code's ``F.kl_div`` default reduction averages over batch *and* classes; here the KL is
    summed over classes and averaged over the batch (``T^2``-scaled), ``C`` times larger, a constant factor
    that Adam's update is invariant to (up to its epsilon).
    """

    defaults = {"lr": 1e-4, "temperature": 1.0, "bad_teacher": None, "retain_fraction": 0.3, "default_epochs": 1,
                "optimizer": "adam"}
    retain = "required"

    def _unlearn(
        self,
        model: torch.nn.Module,
        run: Run,
        *,
        temperature: float,
        bad_teacher: torch.nn.Module | None,
        retain_fraction: float,
        default_epochs: float,
    ) -> torch.nn.Module:
        if not temperature > 0:
            raise InvalidInputError(f"temperature must be positive, got {temperature}")
        if not 0.0 < retain_fraction <= 1.0:
            raise InvalidInputError(f"retain_fraction must be in (0, 1], got {retain_fraction}")
        if bad_teacher is not None and not isinstance(bad_teacher, torch.nn.Module):
            raise ErasusTypeError(f"bad_teacher must be an nn.Module, got {type(bad_teacher).__name__}")
        good = copy.deepcopy(model).eval()
        if bad_teacher is None:
            bad = reinitialize(model, seed=run.seed + 1).eval()
        else:
            bad = copy.deepcopy(bad_teacher).to(run.device).eval()
        for p in [*good.parameters(), *bad.parameters()]:
            p.requires_grad_(False)

        n_forget, n_retain = len(run.forget), len(run.retain)  # type: ignore[arg-type]
        n_sub = max(1, int(retain_fraction * n_retain))
        retain_ids = torch.randperm(n_retain, generator=torch.Generator().manual_seed(run.seed))[:n_sub]
        self.info_["retain_used"] = n_sub
        scale = None
        if run.weights is not None:
            # mean 1 over the forget samples that count, so weights only reweight forget samples among themselves
            scale = float((run.weights > 0).sum()) / float(run.weights.sum())
        batches, per_epoch = _mixed_batches(run, retain_ids)

        def loss(_: int) -> torch.Tensor:
            batch, idx = next(batches)
            is_forget = (idx < n_forget).to(run.device)
            with torch.no_grad():
                t_bad, t_good = run.task.outputs(bad, batch), run.task.outputs(good, batch)
                target = torch.where(is_forget.reshape(-1, *[1] * (t_bad.ndim - 1)), t_bad, t_good)
            kl = per_sample_kl(run.task.outputs(model, batch), target, temperature=temperature)
            v = torch.ones(len(idx), device=kl.device, dtype=kl.dtype)
            if scale is not None:
                fw = run.weights[idx.clamp(max=n_forget - 1)].to(kl.device, kl.dtype) * scale  # type: ignore[index]
                v = torch.where(is_forget.to(kl.device), fw, v)
            total = v.sum()
            return (v * kl).sum() / total if float(total) > 0 else (v * kl).sum()

        if run.steps is not None:
            num_steps = run.steps
        else:
            epochs = run.epochs if run.epochs is not None else default_epochs
            num_steps = max(1, int(round(epochs * per_epoch)))
        run.train(model, loss, num_steps=num_steps, desc="bad teaching")
        return model
