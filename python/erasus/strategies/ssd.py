"""Selective Synaptic Dampening and its label-free variant."""

from __future__ import annotations

import abc
import itertools
import warnings
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

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
    reduce: str = "square",
    desc: str = "importance",
    progress: bool = False,
) -> list[torch.Tensor]:
    """Diagonal importance from batch gradients ``g_b = grad_theta objective(batch_b)``, streamed batch by batch.

    ``reduce="square"`` (SSD): ``I = sum_b W_b g_b^2 / sum_b W_b``, accumulated with
    :func:`erasus.kernels.fisher_accumulate_`; ``reduce="abs"`` (LF-SSD, after Memory Aware Synapses):
    ``I = sum_b W_b |g_b| / sum_b W_b``. The authors' code (if-loops/selective-synaptic-dampening,
    ``src/ssd.py`` ``calc_importance``) averages over batches; here each batch counts by its size ``W_b`` (its
    total sample weight with coreset weights), so a ragged last batch or a weight-0 sample does not dilute the
    mean. Only one batch's gradient is alive at a time.
    """
    from tqdm.auto import tqdm

    from ..kernels import fisher_accumulate_

    if reduce not in ("square", "abs"):
        raise InvalidInputError(f"reduce must be 'square' or 'abs', got {reduce!r}")
    params = [p for p in model.parameters() if p.requires_grad]
    acc = [torch.zeros_like(p, dtype=torch.float32) for p in params]
    model.eval()
    total = 0.0
    for batch, w in tqdm(batches, desc=desc, disable=not progress, leave=False):
        size = float(w.sum()) if w is not None else float(batch_size(batch))
        if size == 0.0:
            continue
        g = torch.autograd.grad(objective(model, batch, w), params, allow_unused=True)
        if reduce == "square":
            fisher_accumulate_(acc, list(g), weight=size)
        else:
            pairs = [(a, gi) for a, gi in zip(acc, g) if gi is not None]
            if pairs:
                torch._foreach_add_([a for a, _ in pairs], [gi.float().abs() for _, gi in pairs], alpha=size)
        total += size
    if total == 0.0:
        raise InvalidInputError("cannot compute importances on an empty data set")
    for a in acc:
        a.div_(total)
    return acc


class _Dampening(UnlearningStrategy):
    data_parallel = False  # importances from this rank's shard only
    defaults = {"alpha": 10.0, "lam": 1.0, "full_importance": None}
    retain = "required"
    gradient_based = False

    @abc.abstractmethod
    def _objective(self, run: Run) -> Callable[[torch.nn.Module, Any, torch.Tensor | None], torch.Tensor]:
        """The scalar whose batch gradient becomes the importance (squared for SSD, absolute for LF-SSD)."""

    #: how batch gradients become importances (see :func:`importance`)
    reduce: ClassVar[str] = "square"

    def _unlearn(self, model: torch.nn.Module, run: Run, *, alpha: float, lam: float,
                 full_importance: list[torch.Tensor] | None) -> torch.nn.Module:
        from ..kernels import ssd_dampen_

        if alpha <= 0 or lam <= 0:
            raise InvalidInputError(f"alpha and lam must be positive, got alpha={alpha}, lam={lam}")
        params = [p for p in model.parameters() if p.requires_grad]
        self.info_["num_parameters"] = sum(p.numel() for p in params)
        n_forget, n_retain = len(run.forget), len(run.retain)  # type: ignore[arg-type]
        n_total = n_forget + n_retain
        name = self.registry_name
        objective = self._objective(run)
        if full_importance is not None:
            # I_D given: the paper's importance on the whole training set, computed once (e.g. with
            # erasus.strategies.ssd.importance over retain + the whole forget set) and reused across coresets;
            # only I_Df is estimated here, on the (weighted) forget set this call gets
            imp_full = _checked_importance(full_importance, params, name)
            imp_forget = importance(model, run.forget_epoch(shuffle=False), objective, batch_size=run.task.batch_size,
                                    reduce=self.reduce, desc=f"{name}: importance on D_f", progress=run.progress)
            with torch.no_grad():
                dampened = ssd_dampen_(params, imp_full, imp_forget, alpha=alpha, lam=lam)
            self.info_["dampened"] = dampened
            return model
        # Unweighted, I_D >= (n_f / n) I_Df entry by entry (D's batches include the forget batches), so with
        # alpha * n_f >= n no entry can pass I_Df > alpha * I_D: say so instead of computing two importances.
        if run.weights is None and alpha * n_forget >= n_total:
            self.info_["dampened"] = 0
            warnings.warn(
                f"{name}: nothing dampened: the forget set holds {n_forget} of the {n_total} training samples, "
                f"at least 1/alpha = 1/{alpha:g} of them, so no parameter can satisfy I_Df > alpha * I_D; "
                f"lower alpha below {n_total / n_forget:.3g}",
                UserWarning,
                stacklevel=3,
            )
            return model
        # I_D: importance on the full training data D = D_r ∪ D_f, streamed. Forget samples enter D unweighted:
        # a weight-0 sample is not forgotten, but it is still training data.
        full_batches = itertools.chain(
            ((b, None) for b in run.retain_epoch(shuffle=False)), ((b, None) for b, _ in run.forget_epoch(shuffle=False))
        )
        imp_full = importance(model, full_batches, objective, batch_size=run.task.batch_size, reduce=self.reduce,
                              desc=f"{name}: importance on D", progress=run.progress)
        imp_forget = importance(model, run.forget_epoch(shuffle=False), objective, batch_size=run.task.batch_size,
                                reduce=self.reduce, desc=f"{name}: importance on D_f", progress=run.progress)
        with torch.no_grad():
            dampened = ssd_dampen_(params, imp_full, imp_forget, alpha=alpha, lam=lam)
        self.info_["dampened"] = dampened
        if dampened == 0:
            warnings.warn(
                f"{name}: nothing dampened: no parameter has I_Df > alpha * I_D (alpha={alpha:g}; forget set "
                f"{n_forget} of {n_total} training samples); the model is unchanged, lower alpha to select parameters",
                UserWarning,
                stacklevel=3,
            )
        return model


def _checked_importance(given: Any, params: list[torch.Tensor], name: str) -> list[torch.Tensor]:
    """``full_importance`` as float32 tensors on the parameters' devices, one per trainable parameter."""
    if isinstance(given, torch.Tensor) or not isinstance(given, (list, tuple)):
        raise InvalidInputError(f"{name}: full_importance must be a list of tensors, one per trainable parameter "
                                f"(as erasus.strategies.ssd.importance returns), got {type(given).__name__}")
    if len(given) != len(params):
        raise InvalidInputError(f"{name}: full_importance holds {len(given)} tensors, the model has {len(params)} "
                                "trainable parameters")
    out = []
    for i, (g, p) in enumerate(zip(given, params)):
        if not isinstance(g, torch.Tensor) or g.shape != p.shape:
            shape = tuple(g.shape) if isinstance(g, torch.Tensor) else type(g).__name__
            raise InvalidInputError(f"{name}: full_importance[{i}] has shape {shape}, parameter {i} has "
                                    f"{tuple(p.shape)}")
        g = g.detach().to(device=p.device, dtype=torch.float32)
        if not torch.isfinite(g).all() or bool((g < 0).any()):
            raise InvalidInputError(f"{name}: full_importance[{i}] must be finite and non-negative")
        out.append(g)
    return out


@register_strategy("ssd")
class SSD(_Dampening):
    """Selective Synaptic Dampening (Foster, Schoepf & Brintrup, AAAI 2024).

    Importances ``I_D = E[(grad_theta L)^2]`` on the full training data and ``I_Df`` on the forget set (weighted
    loss ``sum_i w_i l_i / sum_i w_i``); every parameter with ``I_Df > alpha * I_D`` is dampened,
    ``theta <- theta * min(lambda * I_D / I_Df, 1)``, via :func:`erasus.kernels.ssd_dampen_`; the rest stays
    bit-identical. No training. Paper defaults: ``alpha = 10`` (selection), ``lambda = 1`` (dampening).

    ``full_importance``: a precomputed ``I_D`` (one tensor per trainable parameter, e.g. from :func:`importance`
    over the whole training set); then only ``I_Df`` is computed, on the forget set given. ``I_D`` does not
    depend on which part of the forget set is unlearned, so runs on several coresets of one model can share it.
    (Without it, ``I_D`` is computed on retain + the forget set given, i.e. on retain + the coreset.)
    """

    def _objective(self, run: Run) -> Callable[[torch.nn.Module, Any, torch.Tensor | None], torch.Tensor]:
        return lambda model, batch, w: run.task.loss(model, batch, weights=w)


@register_strategy("lf_ssd")
class LFSSD(_Dampening):
    """Loss-Free SSD (Foster, Schoepf & Brintrup, "Loss-Free Machine Unlearning", ICLR 2024 Tiny Paper).

    SSD without labels. The importance follows Memory Aware Synapses (Aljundi et al., ECCV 2018): the mean
    absolute gradient of the squared l2 norm of the model output,
    ``I = E_b | grad_theta  mean_{i in b} ||f(x_i)||_2^2 |`` (batch gradients, batches weighted by size; forget
    samples by ``sum_i w_i ||f(x_i)||^2 / sum_i w_i``), then ``theta <- theta * min(lambda * I_D / I_Df, 1)``
    where ``I_Df > alpha * I_D``, as SSD. This is the authors' code (if-loops/selective-synaptic-dampening,
    README "Implementing LFSSD": ``loss = torch.norm(out, p="fro", dim=1).pow(2).mean()``,
    ``imp += p.grad.abs()``). Paper defaults: ``alpha = 10``, ``lambda = 1``.
    """

    reduce = "abs"

    def _objective(self, run: Run) -> Callable[[torch.nn.Module, Any, torch.Tensor | None], torch.Tensor]:
        def objective(model: torch.nn.Module, batch: Any, w: torch.Tensor | None) -> torch.Tensor:
            out = run.task.outputs(model, batch)
            return weighted(out.reshape(out.shape[0], -1).pow(2).sum(dim=1), w)

        return objective
