"""SCRUB: student-teacher unlearning with alternating max (forget) and min (retain) steps."""

from __future__ import annotations

import copy
from typing import Any

import torch

from ..errors import InvalidInputError
from ..registry import register_strategy
from .base import Run, UnlearningStrategy, per_sample_kl, weighted

__all__ = ["Scrub", "scrub_schedule"]


def scrub_schedule(*, epochs: int, msteps: int, forget_batches: int, retain_batches: int, steps: int | None) -> list[str]:
    """SCRUB's step sequence: epoch ``e`` makes ``forget_batches`` max-steps if ``e < msteps``, then
    ``retain_batches`` min-steps.

    A ``steps`` budget keeps that structure. A larger budget adds min-only epochs (the max phase belongs to
    the first ``msteps`` epochs only) and ends where the budget does. A smaller one shrinks every phase in
    proportion (largest remainders, at least one step per phase), so each max phase is still followed by its
    min phase rather than the budget being spent on max-steps alone; a budget below the number of phases keeps
    the first ``steps`` phases with one step each.
    """
    phases: list[tuple[str, int]] = []
    for epoch in range(epochs):
        if epoch < msteps:
            phases.append(("max", forget_batches))
        phases.append(("min", retain_batches))
    full = sum(n for _, n in phases)
    if steps is None or steps == full:
        counts = [n for _, n in phases]
    elif steps > full:
        while sum(n for _, n in phases) < steps:
            phases.append(("min", retain_batches))
        counts = [n for _, n in phases]
        counts[-1] -= sum(counts) - steps
    elif steps <= len(phases):
        phases, counts = phases[:steps], [1] * steps
    else:
        shares = [steps * n / full for _, n in phases]
        counts = [max(1, int(x)) for x in shares]
        by_remainder = sorted(range(len(phases)), key=lambda i: (-(shares[i] - int(shares[i])), i))
        for i in by_remainder[: max(0, steps - sum(counts))]:
            counts[i] += 1
        while sum(counts) > steps:  # the one-step floors overshot: take from the longest phases
            counts[counts.index(max(counts))] -= 1
    return [kind for (kind, _), n in zip(phases, counts) for _ in range(n)]


class _OneForward(torch.nn.Module):
    """The student called once per min-step: the KL and the task loss read the same forward pass, as in the
    reference (one ``model_s(input)``), so dropout masks agree and BatchNorm statistics update once."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model
        self._key: tuple[Any, ...] | None = None
        self._out: Any = None

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        key = tuple(id(a) for a in args) + tuple((k, id(v)) for k, v in sorted(kwargs.items()))
        if key != self._key:
            self._key, self._out = key, self.model(*args, **kwargs)
        return self._out

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            pass
        # task adapters that call model methods (CLIP's get_image_features) get the same once-per-input caching
        attr = getattr(self.__dict__["_modules"]["model"], name)
        if not callable(attr) or isinstance(attr, torch.Tensor):
            return attr
        calls = self.__dict__.setdefault("_calls", {})

        def call(*args: Any, **kwargs: Any) -> Any:
            key = (name, *(id(a) for a in args), *((k, id(v)) for k, v in sorted(kwargs.items())))
            if key not in calls:
                calls[key] = attr(*args, **kwargs)
            return calls[key]

        return call


@register_strategy("scrub")
class Scrub(UnlearningStrategy):
    """SCRUB (Kurmanji et al., "Towards Unbounded Machine Unlearning", NeurIPS 2023).

    The student starts as the trained model, the teacher is a frozen copy of it. Each epoch first makes
    *max-steps* on the forget set (only in the first ``msteps`` epochs), then *min-steps* on the retain set:

    * max: ``min_theta  -sum_i w_i d(x_i) / sum_i w_i``, ``d(x) = T^2 KL(p_teacher(x)/T || p_student(x)/T)``
    * min: ``min_theta  alpha * E_r[d(x)] + gamma * E_r[CE(student(x), y)]``

    Defaults are the paper's large-scale setting (meghdadk/SCRUB, ``large_scale_unlearning.ipynb`` with
    ``thirdparty/repdistiller/helper/loops.py`` ``train_distill``): ``alpha = 0.001``, ``gamma = 0.99``,
    temperature ``T = 4``, ``msteps = 2``, 3 epochs, SGD lr 5e-4 momentum 0.9 (the notebook's lr decay at epochs
    3/5/9 never fires within 3 epochs; its separate forget batch size 32 is ``batch_size`` here). ``steps`` sets the
    total number of optimizer steps along that schedule, see :func:`scrub_schedule`.
    """

    defaults = {"lr": 5e-4, "alpha": 0.001, "gamma": 0.99, "temperature": 4.0, "msteps": 2, "default_epochs": 3}
    retain = "required"

    def _unlearn(
        self,
        model: torch.nn.Module,
        run: Run,
        *,
        alpha: float,
        gamma: float,
        temperature: float,
        msteps: int,
        default_epochs: float,
    ) -> torch.nn.Module:
        if temperature <= 0:
            raise InvalidInputError(f"temperature must be positive, got {temperature}")
        teacher = copy.deepcopy(model).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
        epochs = max(1, int(round(run.epochs if run.epochs is not None else default_epochs)))
        schedule = scrub_schedule(epochs=epochs, msteps=msteps, forget_batches=run.batches_per_epoch("forget"),
                                  retain_batches=run.batches_per_epoch("retain"), steps=run.steps)
        forget, retain = run.forget_stream(), run.retain_stream()

        def loss(step: int) -> torch.Tensor:
            if schedule[step] == "max":
                batch, w = next(forget)
                with torch.no_grad():
                    t_out = run.task.outputs(teacher, batch)
                d = per_sample_kl(run.task.outputs(model, batch), t_out, temperature=temperature)
                return -weighted(d, w)
            batch = next(retain)
            once = _OneForward(model)
            s_out = run.task.outputs(once, batch)
            with torch.no_grad():
                t_out = run.task.outputs(teacher, batch)
            kl = per_sample_kl(s_out, t_out, temperature=temperature).mean()
            return alpha * kl + gamma * run.task.loss(once, batch)

        run.train(model, loss, num_steps=len(schedule), desc="max/min steps")
        self.info_["max_steps"] = schedule.count("max")
        self.info_["min_steps"] = schedule.count("min")
        return model
