"""Bad teaching: distil from an incompetent teacher on the forget set and a competent one on the retain set."""

from __future__ import annotations

import copy

import torch

from ..errors import ErasusTypeError, InvalidInputError
from ..registry import register_strategy
from .base import Run, UnlearningStrategy, per_sample_kl, reinitialize, weighted

__all__ = ["BadTeacher"]


@register_strategy("bad_teacher")
class BadTeacher(UnlearningStrategy):
    """Bad teacher (Chundawat et al., "Can Bad Teaching Induce Forgetting?", AAAI 2023).

    With ``l_u = 1`` for forget and ``0`` for retain samples, the student (initialised from the trained model)
    minimises ``KL(l_u * T_s(x) + (1 - l_u) * T_d(x) || S(x))`` at temperature ``T``, where ``T_d`` is the
    competent teacher (the trained model) and ``T_s`` an incompetent one (randomly initialised; or pass
    ``bad_teacher=``). Forget KL terms are weighted ``sum_i w_i KL_i / sum_i w_i``; each step mixes one forget
    and one retain batch in proportion to their sizes, like the paper's mixed loader.

    Defaults from the paper: temperature 1, Adam lr 1e-4, 1 epoch over the forget set. The paper distils on a
    random 30% of the retain data: pass such a subset as the retain set to reproduce that exactly.
    """

    defaults = {"lr": 1e-4, "temperature": 1.0, "bad_teacher": None, "default_epochs": 1, "optimizer": "adam"}
    retain = "required"

    def _unlearn(
        self,
        model: torch.nn.Module,
        run: Run,
        *,
        temperature: float,
        bad_teacher: torch.nn.Module | None,
        default_epochs: float,
    ) -> torch.nn.Module:
        if temperature <= 0:
            raise InvalidInputError(f"temperature must be positive, got {temperature}")
        good = copy.deepcopy(model).eval()
        if bad_teacher is None:
            bad = reinitialize(model, seed=run.seed + 1).eval()
        elif isinstance(bad_teacher, torch.nn.Module):
            bad = copy.deepcopy(bad_teacher).to(run.device).eval()
        else:
            raise ErasusTypeError(f"bad_teacher must be an nn.Module, got {type(bad_teacher).__name__}")
        for p in [*good.parameters(), *bad.parameters()]:
            p.requires_grad_(False)
        forget, retain = run.forget_stream(), run.retain_stream()

        def loss(_: int) -> torch.Tensor:
            fb, w = next(forget)
            rb = next(retain)
            with torch.no_grad():
                t_f = run.task.outputs(bad, fb)
                t_r = run.task.outputs(good, rb)
            kl_f = weighted(per_sample_kl(run.task.outputs(model, fb), t_f, temperature=temperature), w)
            kl_r = per_sample_kl(run.task.outputs(model, rb), t_r, temperature=temperature).mean()
            # zero-weight forget samples count as absent, so they do not shift the forget/retain mix either
            nf = run.task.batch_size(fb) if w is None else int((w > 0).sum())
            nr = run.task.batch_size(rb)
            return (nf * kl_f + nr * kl_r) / (nf + nr)

        run.train(model, loss, num_steps=run.num_steps(default_epochs), desc="bad teaching")
        return model
