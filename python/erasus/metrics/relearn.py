"""Relearn time (Golatkar et al., "Eternal Sunshine of the Spotless Net", CVPR 2020; the "anamnesis" view of
Chundawat et al., "Zero-Shot Machine Unlearning", IEEE TIFS 2023).

Information that was only hidden comes back after a few gradient steps; information that is gone must be
learned again. The metric fine-tunes a copy of the model on the forget set and counts the optimizer steps
until forget accuracy reaches ``threshold``.
"""

from __future__ import annotations

import copy
import itertools
from typing import Any, Literal

import torch
from tqdm.auto import tqdm

from ..errors import InvalidInputError
from ..registry import register_metric
from .accuracy import topk_accuracy
from .base import Metric
from .outputs import class_outputs, collect_outputs, model_device, resolve_task

__all__ = ["relearn_time", "RelearnTimeMetric", "AnamnesisIndexMetric"]


def relearn_time(model: torch.nn.Module, forget: Any, *, threshold: float = 0.9, lr: float = 1e-3,
                 optimizer: Literal["adam", "sgd"] = "adam", max_steps: int = 500, batch_size: int = 32,
                 eval_every: int = 1, seed: int = 0, task: Any = None, device: Any = None,
                 progress: bool = False) -> dict[str, float]:
    """Optimizer steps of fine-tuning (a copy of) ``model`` on ``forget`` until its forget accuracy >= ``threshold``.

    Each step is one mini-batch of ``batch_size`` from a seeded shuffle of the forget set (cycled); accuracy
    is measured on the whole forget set before training and after every ``eval_every`` steps. Returns
    ``relearn_time`` (steps; ``max_steps`` when never reached) and ``relearn_reached`` (1.0 or 0.0). The
    caller's model and the global RNG state are untouched.
    """
    from ..data import as_loader

    if not 0.0 < threshold <= 1.0:
        raise InvalidInputError(f"threshold is a forget accuracy in (0, 1], got {threshold}")
    if max_steps < 0 or eval_every < 1 or lr <= 0:
        raise InvalidInputError(f"need max_steps >= 0, eval_every >= 1 and lr > 0; got {max_steps}, {eval_every}, {lr}")
    if optimizer not in ("adam", "sgd"):
        raise InvalidInputError(f"optimizer must be 'adam' or 'sgd', got {optimizer!r}")
    task = resolve_task(model, forget, task)
    learner = copy.deepcopy(model)
    dev = model_device(learner, device)

    def accuracy() -> float:
        out = collect_outputs(learner, forget, task=task, device=dev, cache=False)
        return topk_accuracy(*class_outputs(out, metric="relearn_time"))

    if accuracy() >= threshold:
        return {"relearn_time": 0.0, "relearn_reached": 1.0}
    params = [p for p in learner.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr) if optimizer == "adam" else torch.optim.SGD(params, lr=lr)
    loader = as_loader(forget, batch_size=batch_size, shuffle=True, seed=seed)
    batches = itertools.chain.from_iterable(itertools.repeat(loader))
    devices = [dev] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        for step in tqdm(range(1, max_steps + 1), desc="relearn", disable=not progress):
            learner.train()
            opt.zero_grad(set_to_none=True)
            task.loss(learner, task.to_device(next(batches), dev)).backward()
            opt.step()
            if step % eval_every == 0 and accuracy() >= threshold:
                return {"relearn_time": float(step), "relearn_reached": 1.0}
    return {"relearn_time": float(max_steps), "relearn_reached": 0.0}


@register_metric("relearn_time")
class RelearnTimeMetric(Metric):
    """Steps of fine-tuning on the forget set until forget accuracy reaches ``threshold`` (see :func:`relearn_time`).

    Keys ``relearn_time`` and ``relearn_reached``. Compare with the retrained model's relearn time: an
    unlearned model that relearns much faster still holds the forgotten information.
    """

    group = "forgetting"

    inputs = ("forget",)

    def __init__(self, *, threshold: float = 0.9, lr: float = 1e-3, optimizer: Literal["adam", "sgd"] = "adam",
                 max_steps: int = 500, train_batch_size: int = 32, eval_every: int = 1, seed: int = 0,
                 progress: bool = False, **options: Any) -> None:
        super().__init__(**options)
        self.options: dict[str, Any] = {"threshold": float(threshold), "lr": float(lr), "optimizer": optimizer,
                        "max_steps": int(max_steps), "batch_size": int(train_batch_size),
                        "eval_every": int(eval_every), "seed": int(seed), "progress": progress}

    def compute(self, model: torch.nn.Module, forget: Any) -> dict[str, float]:
        return relearn_time(model, forget, task=self.task, device=self.device, **self.options)


@register_metric("anamnesis_index")
class AnamnesisIndexMetric(Metric):
    """Anamnesis index, AIN (Chundawat, Tarun, Mandal & Kankanhalli, "Zero-Shot Machine Unlearning", IEEE TIFS
    2023): ``AIN = r_t(M_u) / r_t(M_s)``, the relearn time of the unlearned model over that of the model
    retrained from scratch, each the steps of fine-tuning on the forget set until it regains ``alpha`` times
    the *original* model's forget accuracy (:func:`relearn_time`).

    ``AIN ~ 1``: relearns like a model that never saw the data; ``<< 1``: the information is still there;
    ``> 1``: over-forgotten. ``compute(model, forget, reference_model=retrained, original_model=original)``;
    keys ``anamnesis_index``, ``relearn_time``, ``reference_relearn_time``. Defined where the retrained model
    must relearn (e.g. class forgetting); when it already reaches the threshold the index is refused. The
    paper's ``alpha`` is a user choice; erasus defaults to 0.9.
    """

    group = "forgetting"
    inputs = ("forget",)
    needs_reference = True

    def __init__(self, *, original_model: torch.nn.Module, alpha: float = 0.9, lr: float = 1e-3,
                 optimizer: Literal["adam", "sgd"] = "adam", max_steps: int = 500, train_batch_size: int = 32,
                 seed: int = 0, **options: Any) -> None:
        super().__init__(**options)
        if not isinstance(original_model, torch.nn.Module):
            raise InvalidInputError("anamnesis_index needs original_model= (the model before unlearning)")
        if not 0.0 < alpha <= 1.0:
            raise InvalidInputError(f"alpha is a fraction of the original forget accuracy in (0, 1], got {alpha}")
        self.original_model, self.alpha = original_model, float(alpha)
        self.options: dict[str, Any] = {"lr": float(lr), "optimizer": optimizer, "max_steps": int(max_steps),
                                        "batch_size": int(train_batch_size), "seed": int(seed)}

    def compute(self, model: torch.nn.Module, forget: Any, *, reference_model: torch.nn.Module) -> dict[str, float]:
        if reference_model is None:
            raise InvalidInputError("anamnesis_index compares with the retrained model: pass reference_model=")
        out = collect_outputs(self.original_model, forget, task=self.task, device=self.device, cache=False)
        threshold = self.alpha * topk_accuracy(*class_outputs(out, metric="anamnesis_index"))
        if threshold <= 0:
            raise InvalidInputError("the original model has 0 accuracy on the forget set: nothing to relearn")
        kw = {"threshold": threshold, "task": self.task, "device": self.device, **self.options}
        ref = relearn_time(reference_model, forget, **kw)["relearn_time"]
        if ref == 0:
            raise InvalidInputError(
                f"the retrained model already reaches {threshold:.3g} forget accuracy ({self.alpha} x the original's): "
                "the anamnesis index is undefined here (it is meant for e.g. class forgetting)"
            )
        mine = relearn_time(model, forget, **kw)["relearn_time"]
        return {"anamnesis_index": mine / ref, "relearn_time": mine, "reference_relearn_time": ref}
