"""SCRUB: student-teacher unlearning with alternating max (forget) and min (retain) steps."""

from __future__ import annotations

import copy

import torch

from ..errors import InvalidInputError
from ..registry import register_strategy
from .base import Run, UnlearningStrategy, per_sample_kl, weighted

__all__ = ["Scrub"]


@register_strategy("scrub")
class Scrub(UnlearningStrategy):
    """SCRUB (Kurmanji et al., "Towards Unbounded Machine Unlearning", NeurIPS 2023).

    The student starts as the trained model, the teacher is a frozen copy of it. Each epoch first makes
    *max-steps* on the forget set (only in the first ``msteps`` epochs), then *min-steps* on the retain set:

    * max: ``min_theta  -sum_i w_i d(x_i) / sum_i w_i``, ``d(x) = T^2 KL(p_teacher(x)/T || p_student(x)/T)``
    * min: ``min_theta  alpha * E_r[d(x)] + gamma * E_r[CE(student(x), y)]``

    Defaults are the paper's large-scale setting: ``alpha = 0.001``, ``gamma = 0.99``, temperature ``T = 4``,
    ``msteps = 2``, 3 epochs, SGD lr 5e-4 momentum 0.9. ``steps`` caps the total number of optimizer steps.
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
        epochs = int(round(run.epochs if run.epochs is not None else default_epochs))
        schedule: list[str] = []
        for epoch in range(max(1, epochs)):
            if epoch < msteps:
                schedule += ["max"] * run.batches_per_epoch("forget")
            schedule += ["min"] * run.batches_per_epoch("retain")
        if run.steps is not None:
            schedule = (schedule * (-(-run.steps // len(schedule))))[: run.steps]
        forget, retain = run.forget_stream(), run.retain_stream()

        def loss(step: int) -> torch.Tensor:
            if schedule[step] == "max":
                batch, w = next(forget)
                with torch.no_grad():
                    t_out = run.task.outputs(teacher, batch)
                d = per_sample_kl(run.task.outputs(model, batch), t_out, temperature=temperature)
                return -weighted(d, w)
            batch = next(retain)
            s_out = run.task.outputs(model, batch)
            with torch.no_grad():
                t_out = run.task.outputs(teacher, batch)
            kl = per_sample_kl(s_out, t_out, temperature=temperature).mean()
            return alpha * kl + gamma * run.task.loss(model, batch)

        run.train(model, loss, num_steps=len(schedule), desc="max/min steps")
        self.info_["max_steps"] = schedule.count("max")
        self.info_["min_steps"] = schedule.count("min")
        return model
