"""Representation distance to the retrained model on a chosen layer.

Two independently trained networks embed data in arbitrarily rotated and scaled feature spaces, so the
headline number is ``1 - CKA`` with linear centered kernel alignment (Kornblith et al., "Similarity of Neural
Network Representations Revisited", ICML 2019), invariant to orthogonal transforms and isotropic scaling:
``CKA(X, Y) = ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F)`` on column-centred features. The mean per-sample
L2 distance is reported too; it is meaningful when both models share an initialisation.
"""

from __future__ import annotations

from typing import Any

import torch

from ..errors import InvalidInputError
from ..registry import register_metric
from .base import Metric
from .outputs import evaluating, model_device, ordered_loader, resolve_task

__all__ = ["linear_cka", "capture_features", "FeatureDistanceMetric"]


def linear_cka(x: Any, y: Any) -> float:
    """Linear CKA of feature matrices ``x`` (n, d1) and ``y`` (n, d2) in float64; 1 = equal up to rotation/scale."""
    x, y = torch.as_tensor(x).double(), torch.as_tensor(y).double()
    if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0] or x.shape[0] < 2:
        raise InvalidInputError(
            f"linear_cka needs (n, d) matrices with the same n >= 2, got {tuple(x.shape)} and {tuple(y.shape)}")
    x = x - x.mean(0, keepdim=True)
    y = y - y.mean(0, keepdim=True)
    den = torch.linalg.matrix_norm(x.T @ x) * torch.linalg.matrix_norm(y.T @ y)
    if float(den) == 0.0:
        raise InvalidInputError("a feature matrix is constant across samples; CKA is undefined")
    return float(torch.linalg.matrix_norm(y.T @ x) ** 2 / den)


def _default_layer(model: torch.nn.Module) -> str:
    linears = [name for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    if not linears:
        raise InvalidInputError("the model has no nn.Linear head; pass layer= (a module name from named_modules())")
    return linears[-1]


def capture_features(model: torch.nn.Module, data: Any, *, layer: str | None = None, task: Any = None,
                     batch_size: int = 256, device: Any = None) -> torch.Tensor:
    """Inputs to module ``layer`` (default: the last ``nn.Linear``, i.e. the penultimate features), (N, d) float32.

    Runs the model in eval mode without gradients through the task adapter; flattens each sample's features.
    """
    task = resolve_task(model, data, task)
    name = layer or _default_layer(model)
    modules = dict(model.named_modules())
    if name not in modules:
        raise InvalidInputError(f"the model has no module named {name!r}; pick one of named_modules()")
    chunks: list[torch.Tensor] = []

    def hook(_module: torch.nn.Module, args: tuple[Any, ...]) -> None:
        chunks.append(args[0].detach().float().flatten(1).cpu())

    dev = model_device(model, device)
    handle = modules[name].register_forward_pre_hook(hook)
    try:
        with evaluating(model), torch.no_grad(), torch.random.fork_rng(devices=[]):
            for batch in ordered_loader(data, batch_size=batch_size):
                task.outputs(model, task.to_device(batch, dev))
    finally:
        handle.remove()
    if not chunks:
        raise InvalidInputError(f"module {name!r} was never called on this data; pick a layer on the forward path")
    return torch.cat(chunks)


@register_metric("feature_distance")
class FeatureDistanceMetric(Metric):
    """Feature distance to the retrained model on each split given.

    Keys ``{split}_feature_distance`` = 1 - linear CKA and ``{split}_feature_l2`` = mean_i ||f(x_i) - f_ref(x_i)||_2,
    with features at ``layer`` (default: input to the last ``nn.Linear``; ``reference_layer`` defaults to ``layer``).
    """

    group = "forgetting"

    inputs = ("forget", "retain", "test")
    needs_reference = True

    def __init__(self, *, layer: str | None = None, reference_layer: str | None = None, **options: Any) -> None:
        super().__init__(**options)
        self.layer = layer
        self.reference_layer = reference_layer or layer

    def compute(self, model: torch.nn.Module, forget: Any = None, retain: Any = None, test: Any = None, *,
                reference_model: torch.nn.Module) -> dict[str, float]:
        if reference_model is None:
            raise InvalidInputError("feature_distance compares with the retrained model: pass reference_model=")
        splits = {"forget": forget, "retain": retain, "test": test}
        if all(v is None for v in splits.values()):
            raise InvalidInputError("feature_distance needs at least one of forget=, retain=, test=")
        out = {}
        for split, data in splits.items():
            if data is None:
                continue
            opts = {"task": self.task, "batch_size": self.batch_size, "device": self.device}
            f = capture_features(model, data, layer=self.layer, **opts)
            g = capture_features(reference_model, data, layer=self.reference_layer, **opts)
            out[f"{split}_feature_distance"] = 1.0 - linear_cka(f, g)
            if f.shape == g.shape:
                out[f"{split}_feature_l2"] = float(torch.linalg.vector_norm(f.double() - g.double(), dim=1).mean())
        return out
