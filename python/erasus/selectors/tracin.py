"""TracIn (Pruthi, Liu, Kale & Sundararajan, "Estimating Training Data Influence by Tracing Gradient Descent",
NeurIPS 2020), checkpoint version TracInCP on randomly projected gradients."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import InvalidInputError
from ..registry import register_selector
from ..selection import Selection
from ._common import ContextSelector, as_array, score_selection

__all__ = ["TracInSelector", "tracin_scores"]


def tracin_scores(grads: Sequence[np.ndarray], learning_rates: Sequence[float],
                  target_grads: Sequence[np.ndarray] | None = None) -> np.ndarray:
    """``TracInCP(z_i, T) = sum_t eta_t grad l(w_t, z_i) . mean_{z' in T} grad l(w_t, z')``; self: ``sum_t eta_t ||g_t,i||^2``."""
    scores = np.zeros(grads[0].shape[0])
    for t, (g, lr) in enumerate(zip(grads, learning_rates)):
        if target_grads is None:
            scores += lr * np.einsum("ij,ij->i", g, g)
        else:
            scores += lr * (g @ target_grads[t].mean(axis=0))
    return scores


def _stack(features: Any, name: str) -> list[np.ndarray]:
    if isinstance(features, (list, tuple)):
        mats = [as_array(f, name=f"{name}[{i}]") for i, f in enumerate(features)]
    else:
        a = as_array(features, name=name, ndim=None)
        if a.ndim not in (2, 3):
            raise InvalidInputError(f"{name} must be (n, d) or (checkpoints, n, d), got shape {a.shape}")
        mats = [a] if a.ndim == 2 else list(a)
    if not mats:
        raise InvalidInputError(f"{name} is empty: give one gradient matrix per checkpoint")
    if len({m.shape for m in mats}) != 1:
        raise InvalidInputError(f"every checkpoint's {name} must have the same shape, got {[m.shape for m in mats]}")
    return mats


@register_selector("tracin")
class TracInSelector(ContextSelector):
    """TracInCP (Pruthi et al., NeurIPS 2020): ``score_i = sum_t eta_t grad l(w_t, z_i) . grad l(w_t, z')``; keeps the highest.

    ``w_t`` are checkpoints saved during training and ``eta_t`` the learning rate in effect there
    (``learning_rates``, default 1 for each). With a target set (``target=`` data with a model, or
    ``target_features=``) ``z'`` ranges over it (mean gradient, i.e. the proponents of the target); without one the
    score is the self-influence ``sum_t eta_t ||grad l(w_t, z_i)||^2`` the paper uses to surface memorised /
    mislabeled samples. ``features`` are per-checkpoint gradients: a list of ``(n, d)`` arrays or a
    ``(checkpoints, n, d)`` array. With ``model=[checkpoint models]`` and ``data=`` they are
    :func:`erasus.features.per_sample_gradients` projected to ``proj_dim`` with one ``projection`` and ``seed``
    shared by all checkpoints (the paper's random projections).
    """

    call_inputs = ("target", "target_features")

    def __init__(self, *, seed: int = 0, learning_rates: Sequence[float] | None = None, proj_dim: int = 1024,
                 projection: str = "rademacher", feature_options: dict[str, Any] | None = None) -> None:
        super().__init__(seed=seed, learning_rates=learning_rates, proj_dim=proj_dim, projection=projection,
                         feature_options=feature_options)
        self.learning_rates = None if learning_rates is None else [float(v) for v in learning_rates]
        self.proj_dim, self.projection = int(proj_dim), projection
        self.feature_options = dict(feature_options or {})

    def _grads(self, models: list[Any], data: Any, task: Any) -> list[np.ndarray]:
        from .. import features

        opts = {"proj_dim": self.proj_dim, "projection": self.projection, "seed": self.seed, "progress": False,
                **self.feature_options}
        return [features.per_sample_gradients(m, data, task=task, **opts).double().numpy() for m in models]

    def _from_model(self, model: Any, data: Any, *, task: Any, context: dict[str, Any]) -> tuple[Any, Any]:
        models = list(model) if isinstance(model, (list, tuple)) else [model]
        context["_stack"] = self._grads(models, data, task)
        if context.get("target") is not None:
            context["target_features"] = self._grads(models, context["target"], task)
        return context["_stack"][0], None

    def select(self, k: int | None = None, *, features: Any = None, **kwargs: Any) -> Selection:
        """As :meth:`Selector.select`; ``features`` may also be one gradient matrix per checkpoint."""
        if features is not None:
            stack = _stack(features, "features")
            kwargs["_stack"] = stack
            features = stack[0]
        return super().select(k, features=features, **kwargs)

    def _select(self, x: np.ndarray, k: int, *, labels: np.ndarray | None) -> Selection:
        stack = self._context["_stack"]
        lrs = self.learning_rates if self.learning_rates is not None else [1.0] * len(stack)
        if len(lrs) != len(stack):
            raise InvalidInputError(f"got {len(lrs)} learning rates for {len(stack)} checkpoints; give one per checkpoint")
        target = self._context.get("target_features")
        if target is not None:
            target = _stack(target, "target_features")
            if len(target) != len(stack) or target[0].shape[1] != stack[0].shape[1]:
                raise InvalidInputError(f"target_features must hold {len(stack)} checkpoints of {stack[0].shape[1]} "
                                        f"columns, got {len(target)} of {target[0].shape[1]}")
        scores = tracin_scores(stack, lrs, target)
        return score_selection(scores, k, metadata={"checkpoints": len(stack), "target": target is not None})
