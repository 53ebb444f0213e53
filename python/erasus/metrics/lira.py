"""Likelihood-ratio attack, LiRA (Carlini et al., "Membership Inference Attacks From First Principles", S&P 2022).

For every query ``(x, y)`` the attack looks at the logit-scaled confidence
``phi = log(p_y / (1 - p_y)) = z_y - logsumexp_{j != y} z_j``, which is close to Gaussian over the randomness
of training. Shadow models trained on random halves of a population estimate, per example, the
distribution of ``phi`` when ``x`` is IN the training set, ``N(mu_in, s_in^2)``, and when it is OUT,
``N(mu_out, s_out^2)``.

- online: ``Lambda = log N(phi; mu_in, s_in^2) - log N(phi; mu_out, s_out^2)``; every query is in exactly half
  of the shadows (Carlini et al.'s balanced ``keep`` matrix);
- offline: shadows never train on the queries; one-sided test ``Lambda = Pr[Z <= phi]``, ``Z ~ N(mu_out, s_out^2)``.

With few shadows (the paper: fewer than 64) a global variance, pooled over all examples' residuals, is
more reliable than per-example ones; ``fix_variance=None`` picks it automatically. Queries are scored
without augmentations (one query per example).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
from scipy.stats import norm
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Subset
from tqdm.auto import tqdm

from ..errors import ErasusTypeError, InvalidInputError
from ..registry import register_metric
from .attack import as_scores, attack_summary
from .base import Metric
from .outputs import class_outputs, collect_outputs, model_device, resolve_task

__all__ = ["logit_scaled_confidence", "lira_scores", "train_classifier", "LiRAMetric"]

_MIN_STD = 1e-8


def logit_scaled_confidence(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``phi_i = log(p_y / (1 - p_y)) = z_y - logsumexp_{j != y} z_j`` in float64 (stable for p_y -> 1)."""
    logits = torch.as_tensor(logits).double()
    labels = torch.as_tensor(labels).long().reshape(-1, 1).to(logits.device)
    if logits.ndim != 2 or labels.shape[0] != logits.shape[0] or logits.shape[1] < 2:
        raise InvalidInputError(f"LiRA needs logits (N, C >= 2) and labels (N,), got {tuple(logits.shape)} and "
                                f"{tuple(labels.shape[:1])}")
    z_y = logits.gather(1, labels).squeeze(1)
    others = logits.scatter(1, labels, float("-inf"))
    return z_y - torch.logsumexp(others, dim=1)


def _gaussian_fit(values: np.ndarray, mask: np.ndarray, *, pooled: bool) -> tuple[np.ndarray, np.ndarray]:
    count = mask.sum(axis=1)
    mean = np.where(mask, values, 0.0).sum(axis=1) / count
    sq = np.where(mask, (values - mean[:, None]) ** 2, 0.0)
    std = np.full(mean.shape, np.sqrt(sq.sum() / count.sum())) if pooled else np.sqrt(sq.sum(axis=1) / count)
    return mean, np.maximum(std, _MIN_STD)


def lira_scores(target: Any, shadow: Any, in_mask: Any, *, online: bool = True, fix_variance: bool | None = None
                ) -> np.ndarray:
    """Per-query LiRA scores (larger = more likely member).

    Args:
        target: ``phi`` of the attacked model on the ``n`` queries, shape (n,).
        shadow: ``phi`` of the ``S`` shadow models on the queries, shape (n, S).
        in_mask: (n, S) bool, True where query ``i`` was in shadow ``s``'s training set (offline: ignored
            entries; only OUT entries are used).
        online: likelihood ratio of IN vs OUT Gaussians; else the one-sided offline test.
        fix_variance: one pooled variance for all examples; ``None`` = when ``S < 64``.
    """
    t = as_scores(target, what="target confidences")
    s = np.asarray(shadow.detach().cpu() if hasattr(shadow, "detach") else shadow, dtype=np.float64)
    mask = np.asarray(in_mask, dtype=bool)
    if s.ndim != 2 or s.shape[0] != t.size or mask.shape != s.shape:
        raise InvalidInputError(f"shadow and in_mask must be (n={t.size}, S); got {s.shape} and {mask.shape}")
    if not np.isfinite(s).all():
        raise InvalidInputError("shadow confidences contain NaN or infinity")
    pooled = s.shape[1] < 64 if fix_variance is None else bool(fix_variance)
    out_mask = ~mask
    need = 1 if pooled else 2
    if (out_mask.sum(axis=1) < need).any() or (online and (mask.sum(axis=1) < need).any()):
        what = "IN and OUT" if online else "OUT"
        raise InvalidInputError(
            f"every query needs >= {need} {what} shadow models ({'pooled' if pooled else 'per-example'} variance); "
            "train more shadow models or use fix_variance=True"
        )
    mu_out, sd_out = _gaussian_fit(s, out_mask, pooled=pooled)
    if not online:
        return norm.logcdf(t, mu_out, sd_out)
    mu_in, sd_in = _gaussian_fit(s, mask, pooled=pooled)
    return norm.logpdf(t, mu_in, sd_in) - norm.logpdf(t, mu_out, sd_out)


def train_classifier(model: torch.nn.Module, dataset: Dataset, *, task: Any = None, epochs: int = 30,
                     lr: float = 1e-3, weight_decay: float = 0.0, batch_size: int = 128, seed: int = 0,
                     collate_fn: Callable[..., Any] | None = None) -> torch.nn.Module:
    """Train ``model`` in place with Adam on ``task.loss`` for ``epochs`` shuffled passes (the shadow recipe)."""
    task = resolve_task(model, dataset, task)
    device = model_device(model)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(seed), collate_fn=collate_fn)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    model.train()
    for _ in range(epochs):
        for batch in loader:
            opt.zero_grad(set_to_none=True)
            task.loss(model, task.to_device(batch, device)).backward()
            opt.step()
    return model.eval()


class ShadowTraining:
    """The shadow recipe LiRA and U-LiRA share: shadow ``index`` is ``model_factory()`` under torch seed
    ``seed * 100_003 + index``, trained by ``train_fn(model, dataset)`` or :func:`train_classifier`."""

    model_factory: Callable[[], torch.nn.Module]
    train_fn: Callable[[torch.nn.Module, Dataset], torch.nn.Module] | None
    train_options: dict[str, Any]
    seed: int

    def _fit_shadow(self, index: int, dataset: Dataset, task: Any, device: torch.device,
                    collate: Any) -> torch.nn.Module:
        torch.manual_seed(self.seed * 100_003 + index)
        shadow = self.model_factory()
        if not isinstance(shadow, torch.nn.Module):
            raise ErasusTypeError(f"model_factory() must return a torch.nn.Module, got {type(shadow).__name__}")
        shadow = shadow.to(device)
        if self.train_fn is not None:
            return self.train_fn(shadow, dataset)
        return train_classifier(shadow, dataset, task=task, seed=self.seed * 100_003 + index, collate_fn=collate,
                                **self.train_options)


@register_metric("lira")
class LiRAMetric(ShadowTraining, Metric):
    """LiRA membership inference of forget (members) against test (non-members) with shadow models.

    ``LiRAMetric(model_factory=..., population=..., n_shadow=8, online=True).compute(model, forget, test)``.
    ``model_factory()`` builds a fresh untrained model; ``train_fn(model, dataset) -> model`` trains it (default:
    :func:`train_classifier` with ``epochs``/``lr``/``weight_decay``/``train_batch_size``). ``population`` is
    data from the training distribution, disjoint from the queries; online shadows train on a random half of
    population + queries, offline shadows on a random half of the population. Shadows are fit once per
    (forget, test) pair of objects and reused (e.g. for a reference model).

    Keys ``lira_auc``, ``lira_balanced_accuracy``, ``lira_advantage``, ``lira_tpr_at_fpr_0.001``,
    ``lira_tpr_at_fpr_0.01``. A model that forgot its forget set scores AUC ~= 0.5.
    """

    group = "privacy"

    inputs = ("forget", "test")

    def __init__(self, *, model_factory: Callable[[], torch.nn.Module], population: Any, n_shadow: int = 8,
                 online: bool = True, fix_variance: bool | None = None,
                 train_fn: Callable[[torch.nn.Module, Dataset], torch.nn.Module] | None = None,
                 epochs: int = 30, lr: float = 1e-3, weight_decay: float = 0.0, train_batch_size: int = 128,
                 seed: int = 0, progress: bool = True, **options: Any) -> None:
        super().__init__(**options)
        if not callable(model_factory):
            raise ErasusTypeError(f"model_factory must be a callable returning a fresh model, got {model_factory!r}")
        if population is None:
            raise InvalidInputError(
                "LiRA needs population= data (same distribution as training, disjoint from queries)")
        if not isinstance(n_shadow, int) or n_shadow < 2:
            raise InvalidInputError(f"n_shadow must be an int >= 2, got {n_shadow!r}")
        self.model_factory = model_factory
        self.population = population
        self.n_shadow = n_shadow
        self.online = bool(online)
        self.fix_variance = fix_variance
        self.train_fn = train_fn
        self.train_options: dict[str, Any] = {"epochs": int(epochs), "lr": float(lr),
                                              "weight_decay": float(weight_decay), "batch_size": int(train_batch_size)}
        self.seed = int(seed)
        self.progress = progress
        self._shadow_cache: tuple[Any, Any, np.ndarray, np.ndarray] | None = None

    def _train(self, index: int, dataset: Dataset, task: Any, device: torch.device, collate: Any) -> torch.nn.Module:
        devices = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            return self._fit_shadow(index, dataset, task, device, collate)

    def shadow_confidences(self, model: torch.nn.Module, forget: Any, test: Any) -> tuple[np.ndarray, np.ndarray]:
        """Fit (or reuse) the shadows; return their ``phi`` on forget+test queries (n, S) and the IN mask (n, S)."""
        cache = self._shadow_cache
        if cache is not None and cache[0] is forget and cache[1] is test:
            return cache[2], cache[3]
        from ..data import as_dataset, collate_of

        task = resolve_task(model, forget, self.task)
        device = model_device(model, self.device)
        collate = collate_of(forget)
        queries: ConcatDataset[Any] = ConcatDataset([as_dataset(forget), as_dataset(test)])
        population = as_dataset(self.population)
        pool: Dataset = ConcatDataset([population, queries]) if self.online else population
        n_pool, n_pop, n_q = len(pool), len(population), len(queries)  # type: ignore[arg-type]
        rng = np.random.default_rng(self.seed)
        # Carlini et al.'s keep matrix: every pool example is IN exactly floor(S/2) of the S shadows
        keep = rng.uniform(size=(self.n_shadow, n_pool)).argsort(axis=0) < self.n_shadow // 2
        query_loader = DataLoader(queries, batch_size=self.batch_size, shuffle=False, collate_fn=collate)
        phis = []
        with torch.random.fork_rng(devices=[]):
            for s in tqdm(range(self.n_shadow), desc="LiRA shadow models", disable=not self.progress):
                shadow = self._train(s, Subset(pool, np.flatnonzero(keep[s]).tolist()), task, device, collate)
                out = collect_outputs(shadow, query_loader, task=task, batch_size=self.batch_size, device=device,
                                      cache=False)
                phis.append(logit_scaled_confidence(*class_outputs(out, metric="lira")).numpy())
        shadow_phi = np.stack(phis, axis=1)
        in_mask = keep[:, n_pop:].T if self.online else np.zeros((n_q, self.n_shadow), dtype=bool)
        self._shadow_cache = (forget, test, shadow_phi, in_mask)
        return shadow_phi, in_mask

    def compute(self, model: torch.nn.Module, forget: Any, test: Any) -> dict[str, float]:
        f_logits, f_labels = class_outputs(self._collect(model, forget), metric="lira")
        t_logits, t_labels = class_outputs(self._collect(model, test), metric="lira")
        target = torch.cat([logit_scaled_confidence(f_logits, f_labels), logit_scaled_confidence(t_logits, t_labels)])
        shadow_phi, in_mask = self.shadow_confidences(model, forget, test)
        scores = lira_scores(target, shadow_phi, in_mask, online=self.online, fix_variance=self.fix_variance)
        n_f = f_logits.shape[0]
        return {f"lira_{k}": v for k, v in attack_summary(scores[:n_f], scores[n_f:]).items()}
