"""Selective Synaptic Dampening and its label-free variant."""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable
from typing import Any

import torch

from ..errors import InvalidInputError
from ..registry import register_strategy
from .base import Run, UnlearningStrategy, weighted

__all__ = ["SSD", "LFSSD", "importance"]


def importance(
    model: torch.nn.Module,
    batches: Iterable[tuple[Any, torch.Tensor | None]],
    objective: Callable[[torch.nn.Module, Any, torch.Tensor | None], torch.Tensor],
    *,
    batch_size: Callable[[Any], int],
    desc: str = "importance",
    progress: bool = False,
) -> list[torch.Tensor]:
    """SSD's diagonal importance ``I = sum_b W_b (grad_theta objective(batch_b))^2 / sum_b W_b``: the authors'
    code squares each batch gradient and averages over batches; here each batch counts by its size ``W_b``
    (its total sample weight with coreset weights), so a ragged last batch or a weight-0 sample does not
    dilute the mean. Accumulated with :func:`erasus.kernels.fisher_accumulate_`."""
    from tqdm.auto import tqdm

    from ..kernels import fisher_accumulate_

    params = [p for p in model.parameters() if p.requires_grad]
    acc = [torch.zeros_like(p, dtype=torch.float32) for p in params]
    model.eval()
    total = 0.0
    for batch, w in tqdm(batches, desc=desc, disable=not progress, leave=False):
        size = float(w.sum()) if w is not None else float(batch_size(batch))
        if size == 0.0:
            continue
        g = torch.autograd.grad(objective(model, batch, w), params, allow_unused=True)
        fisher_accumulate_(acc, list(g), weight=size)
        total += size
    if total == 0.0:
        raise InvalidInputError("cannot compute importances on an empty data set")
    for a in acc:
        a.div_(total)
    return acc


class _Dampening(UnlearningStrategy):
    defaults = {"alpha": 10.0, "lam": 1.0}
    retain = "required"
    gradient_based = False

    @abc.abstractmethod
    def _objective(self, run: Run) -> Callable[[torch.nn.Module, Any, torch.Tensor | None], torch.Tensor]:
        """The scalar whose squared gradient is the importance."""

    def _unlearn(self, model: torch.nn.Module, run: Run, *, alpha: float, lam: float) -> torch.nn.Module:
        from ..kernels import ssd_dampen_

        if alpha <= 0 or lam <= 0:
            raise InvalidInputError(f"alpha and lam must be positive, got alpha={alpha}, lam={lam}")
        objective = self._objective(run)
        # I_D: importance on the full training data D = D_r ∪ D_f (batches of both). Forget samples enter D
        # unweighted: a weight-0 sample is not forgotten, but it is still training data.
        full_batches = [(b, None) for b in run.retain_epoch(shuffle=False)] + [
            (b, None) for b, _ in run.forget_epoch(shuffle=False)
        ]
        name = self.registry_name
        imp_full = importance(model, full_batches, objective, batch_size=run.task.batch_size,
                              desc=f"{name}: importance on D", progress=run.progress)
        imp_forget = importance(model, run.forget_epoch(shuffle=False), objective, batch_size=run.task.batch_size,
                                desc=f"{name}: importance on D_f", progress=run.progress)
        params = [p for p in model.parameters() if p.requires_grad]
        with torch.no_grad():
            self.info_["dampened"] = ssd_dampen_(params, imp_full, imp_forget, alpha=alpha, lam=lam)
        self.info_["num_parameters"] = sum(p.numel() for p in params)
        return model


@register_strategy("ssd")
class SSD(_Dampening):
    """Selective Synaptic Dampening (Foster, Schoepf & Brintrup, AAAI 2024).

    Importances ``I_D = E[(grad_theta L)^2]`` on the full training data and ``I_Df`` on the forget set (weighted
    loss ``sum_i w_i l_i / sum_i w_i``); every parameter with ``I_Df > alpha * I_D`` is dampened,
    ``theta <- theta * min(lambda * I_D / I_Df, 1)``, via :func:`erasus.kernels.ssd_dampen_`; the rest stays
    bit-identical. No training. Paper defaults: ``alpha = 10`` (selection), ``lambda = 1`` (dampening).
    """

    def _objective(self, run: Run) -> Callable[[torch.nn.Module, Any, torch.Tensor | None], torch.Tensor]:
        return lambda model, batch, w: run.task.loss(model, batch, weights=w)


@register_strategy("lf_ssd")
class LFSSD(_Dampening):
    """Loss-Free SSD (Foster, Schoepf & Brintrup, "Loss-Free Machine Unlearning", ICLR 2024 Tiny Paper).

    SSD without labels: the importance is ``E[(grad_theta ||f(x)||_2)^2]``, the sensitivity of the l2 norm of the
    model output (a label-free stand-in for the Fisher, as in Memory Aware Synapses), then
    ``theta <- theta * min(lambda * I_D / I_Df, 1)`` where ``I_Df > alpha * I_D``. Paper defaults:
    ``alpha = 10``, ``lambda = 1``.
    """

    def _objective(self, run: Run) -> Callable[[torch.nn.Module, Any, torch.Tensor | None], torch.Tensor]:
        def objective(model: torch.nn.Module, batch: Any, w: torch.Tensor | None) -> torch.Tensor:
            out = run.task.outputs(model, batch)
            return weighted(out.reshape(out.shape[0], -1).norm(dim=1), w)

        return objective
