"""U-LiRA: the unlearning likelihood-ratio attack (Hayes, Shumailov, Triantafillou, Khalifa & Papernot,
"Inexact Unlearning Needs More Careful Evaluations to Avoid a False Sense of Privacy", arXiv:2403.01218, 2024).

LiRA (Carlini et al. 2022) asks "was ``x`` trained on?"; U-LiRA asks "is this model *unlearned* on ``x`` or
*retrained* without it?". Shadow models are trained on random halves of ``population + forget`` (each forget
sample is in half of them, Carlini et al.'s balanced keep matrix); in every shadow the forget samples it
trained on are then removed with the method under test (``unlearn_fn``). Per forget sample ``x`` the
logit-scaled confidence ``phi`` is fit by a Gaussian over the *unlearned* shadows (``x`` was in training and
was unlearned) and one over the *retrained* shadows (``x`` never in training); the test statistic is
``Lambda = log N(phi; mu_U, s_U^2) - log N(phi; mu_R, s_R^2)``.

The metric scores the model under test against the oracle retrained without the forget set: members are the
model's ``Lambda`` on the forget samples, non-members the oracle's on the same samples, and the AUC says how
well the attack tells them apart (0.5 = the unlearned model is as good as retrained on every sample).
Without ``unlearn_fn`` the IN shadows are not unlearned, which tests an *un-unlearned* model: then U-LiRA
is LiRA restricted to the forget set. Deviation from the paper: Hayes et al. average over many target
models per sample; here there is one target and one oracle, so the AUC is over forget samples.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Subset
from tqdm.auto import tqdm

from ..errors import ErasusTypeError, InvalidInputError
from ..registry import register_metric
from .attack import attack_summary
from .base import Metric
from .lira import ShadowTraining, lira_scores, logit_scaled_confidence
from .outputs import class_outputs, collect_outputs, model_device, resolve_task

__all__ = ["ULiRAMetric", "u_lira_scores"]


def u_lira_scores(target: Any, shadow: Any, unlearned_mask: Any, *, fix_variance: bool | None = None) -> np.ndarray:
    """``Lambda_i = log N(phi_i; mu_U, s_U^2) - log N(phi_i; mu_R, s_R^2)`` per forget sample.

    ``shadow`` (n, S): the shadows' ``phi``; ``unlearned_mask`` (n, S): True where sample ``i`` was trained on
    and then unlearned by shadow ``s``, False where ``s`` never trained on it (retrained).
    """
    return lira_scores(target, shadow, unlearned_mask, online=True, fix_variance=fix_variance)


@register_metric("u_lira")
class ULiRAMetric(ShadowTraining, Metric):
    """U-LiRA (Hayes et al. 2024): per-example likelihood-ratio test of the model vs the retrained oracle.

    ``ULiRAMetric(model_factory=..., population=..., unlearn_fn=..., n_shadow=8).compute(model, forget,
    reference_model=oracle)``. ``unlearn_fn(model, forget_dataset, retain_dataset) -> model`` is the unlearning
    method applied to each shadow (``None``: shadows are not unlearned); ``population`` is training-distribution
    data disjoint from ``forget``. Keys ``u_lira_auc``, ``u_lira_balanced_accuracy``, ``u_lira_advantage``,
    ``u_lira_tpr_at_fpr_0.001``/``0.01``. Shadows are trained once per forget set object and reused.
    """

    inputs = ("forget",)
    needs_reference = True
    group = "privacy"

    def __init__(self, *, model_factory: Callable[[], torch.nn.Module], population: Any, n_shadow: int = 8,
                 unlearn_fn: Callable[[torch.nn.Module, Dataset, Dataset], torch.nn.Module] | None = None,
                 fix_variance: bool | None = None,
                 train_fn: Callable[[torch.nn.Module, Dataset], torch.nn.Module] | None = None,
                 epochs: int = 30, lr: float = 1e-3, weight_decay: float = 0.0, train_batch_size: int = 128,
                 seed: int = 0, progress: bool = True, **options: Any) -> None:
        super().__init__(**options)
        if not callable(model_factory):
            raise ErasusTypeError(f"model_factory must be a callable returning a fresh model, got {model_factory!r}")
        if unlearn_fn is not None and not callable(unlearn_fn):
            raise ErasusTypeError(f"unlearn_fn must be callable (model, forget, retain) -> model, got {unlearn_fn!r}")
        if population is None:
            raise InvalidInputError("U-LiRA needs population= data (the training distribution, disjoint from forget)")
        if not isinstance(n_shadow, int) or n_shadow < 4:
            raise InvalidInputError(f"n_shadow must be an int >= 4 (>= 2 unlearned and 2 retrained), got {n_shadow!r}")
        self.model_factory, self.population, self.n_shadow = model_factory, population, n_shadow
        self.unlearn_fn, self.fix_variance, self.train_fn = unlearn_fn, fix_variance, train_fn
        self.train_options: dict[str, Any] = {"epochs": int(epochs), "lr": float(lr),
                                              "weight_decay": float(weight_decay), "batch_size": int(train_batch_size)}
        self.seed, self.progress = int(seed), progress
        self._cache: tuple[Any, np.ndarray, np.ndarray] | None = None

    def shadow_confidences(self, model: torch.nn.Module, forget: Any) -> tuple[np.ndarray, np.ndarray]:
        """Train (or reuse) the shadows; their ``phi`` on the forget samples (n, S) and the unlearned mask (n, S)."""
        if self._cache is not None and self._cache[0] is forget:
            return self._cache[1], self._cache[2]
        from ..data import as_dataset, collate_of

        task = resolve_task(model, forget, self.task)
        device = model_device(model, self.device)
        collate = collate_of(forget)
        forget_ds, population = as_dataset(forget), as_dataset(self.population)
        n_pop, n_f = len(population), len(forget_ds)  # type: ignore[arg-type]
        pool: Dataset = ConcatDataset([population, forget_ds])
        rng = np.random.default_rng(self.seed)
        keep = rng.uniform(size=(self.n_shadow, n_pop + n_f)).argsort(axis=0) < self.n_shadow // 2
        query_loader = DataLoader(forget_ds, batch_size=self.batch_size, shuffle=False, collate_fn=collate)
        phis = []
        devices = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            for s in tqdm(range(self.n_shadow), desc="U-LiRA shadow models", disable=not self.progress):
                members = np.flatnonzero(keep[s])
                # the unlearning below continues the shadow's random stream, so no fork per shadow here
                shadow = self._fit_shadow(s, Subset(pool, members.tolist()), task, device, collate)
                if self.unlearn_fn is not None:
                    f_in = members[members >= n_pop]
                    r_in = members[members < n_pop]
                    shadow = self.unlearn_fn(shadow, Subset(pool, f_in.tolist()), Subset(pool, r_in.tolist()))
                out = collect_outputs(shadow, query_loader, task=task, batch_size=self.batch_size, device=device,
                                      cache=False)
                phis.append(logit_scaled_confidence(*class_outputs(out, metric="u_lira")).numpy())
        shadow_phi = np.stack(phis, axis=1)
        mask = keep[:, n_pop:].T
        self._cache = (forget, shadow_phi, mask)
        return shadow_phi, mask

    def compute(self, model: torch.nn.Module, forget: Any, *, reference_model: torch.nn.Module) -> dict[str, float]:
        if reference_model is None:
            raise InvalidInputError("u_lira compares the model with the retrained oracle: pass reference_model=")
        target = logit_scaled_confidence(*class_outputs(self._collect(model, forget), metric="u_lira"))
        oracle = logit_scaled_confidence(*class_outputs(self._collect(reference_model, forget), metric="u_lira"))
        shadow_phi, mask = self.shadow_confidences(model, forget)
        members = u_lira_scores(target, shadow_phi, mask, fix_variance=self.fix_variance)
        nonmembers = u_lira_scores(oracle, shadow_phi, mask, fix_variance=self.fix_variance)
        return {f"u_lira_{k}": v for k, v in attack_summary(members, nonmembers).items()}
