"""Output-space distances to the retrained model: Jensen-Shannon and Kullback-Leibler divergence, activation distance.

Both compare the softmax outputs of the unlearned model ``p`` and the model retrained without the forget set
``q`` on the same samples (Chundawat et al., "Can Bad Teaching Induce Forgetting?", AAAI 2023; Golatkar et
al., "Forgetting Outside the Box", ECCV 2020, for the activation distance).
"""

from __future__ import annotations

import abc
from typing import Any

import torch

from ..errors import InvalidInputError
from ..registry import register_metric
from .base import SplitMetric

__all__ = ["js_divergence", "kl_divergence", "activation_distance", "JSDivergenceMetric", "KLDivergenceMetric",
           "ActivationDistanceMetric"]


def _pair(p: Any, q: Any, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    p, q = torch.as_tensor(p).double(), torch.as_tensor(q).double()
    if p.ndim != 2 or p.shape != q.shape or p.shape[0] == 0:
        raise InvalidInputError(f"{what} needs two non-empty (N, C) probability matrices of equal shape, got "
                                f"{tuple(p.shape)} and {tuple(q.shape)}")
    return p, q


def js_divergence(p: Any, q: Any, *, base: float = 2.0) -> torch.Tensor:
    """Per-row ``JS(p, q) = KL(p || m) / 2 + KL(q || m) / 2`` with ``m = (p + q) / 2``, in log ``base`` (float64).

    In base 2 the divergence lies in [0, 1]. Rows are probability vectors (e.g. ``softmax(logits)``);
    ``0 log 0 = 0``.
    """
    p, q = _pair(p, q, "js_divergence")
    m = (p + q) / 2
    kl_pm = torch.special.xlogy(p, p).sum(1) - torch.special.xlogy(p, m).sum(1)
    kl_qm = torch.special.xlogy(q, q).sum(1) - torch.special.xlogy(q, m).sum(1)
    return (kl_pm + kl_qm) / (2 * torch.log(torch.tensor(float(base), dtype=torch.float64)))


def kl_divergence(p: Any, q: Any) -> torch.Tensor:
    """Per-row ``KL(q || p) = sum_c q_c log(q_c / p_c)`` in nats (float64): what the model's outputs ``p`` lose
    about the retrained model's ``q`` (Kullback & Leibler 1951). ``0 log 0 = 0``."""
    p, q = _pair(p, q, "kl_divergence")
    # a softmax that underflowed to 0 where q > 0 would make the divergence inf; the smallest normal float64
    # keeps it finite (about 708 nats per unit of q) without changing any representable probability
    p = p.clamp_min(torch.finfo(torch.float64).tiny)
    return torch.special.xlogy(q, q).sum(1) - torch.special.xlogy(q, p).sum(1)


def activation_distance(p: Any, q: Any) -> torch.Tensor:
    """Per-row L2 distance ``||p - q||_2`` between the two models' output probabilities (float64)."""
    p, q = _pair(p, q, "activation_distance")
    return torch.linalg.vector_norm(p - q, dim=1)


class _OutputDistance(SplitMetric):
    needs_reference = True
    group = "forgetting"

    @abc.abstractmethod
    def _distance(self, p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        """Per-sample distance between the two models' probability rows."""

    def compute(self, model: torch.nn.Module, forget: Any = None, retain: Any = None, test: Any = None, *,
                reference_model: torch.nn.Module) -> dict[str, float]:
        if reference_model is None:
            raise InvalidInputError(f"{self.key} compares with the retrained model: pass reference_model=")
        return super().compute(model, forget, retain, test, reference_model=reference_model)

    def _split_value(self, model: Any, data: Any, *, reference_model: torch.nn.Module) -> float:
        p = torch.softmax(self._collect(model, data).logits.double(), dim=-1)
        q = torch.softmax(self._collect(reference_model, data).logits.double(), dim=-1)
        return float(self._distance(p, q).mean())


@register_metric("js_divergence")
class JSDivergenceMetric(_OutputDistance):
    """Mean Jensen-Shannon divergence (base 2, in [0, 1]) between the model's and the retrained model's
    softmax outputs on each split given; keys ``{split}_js_divergence``. 0 = identical predictions."""

    key = "js_divergence"

    def _distance(self, p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        return js_divergence(p, q)


@register_metric("kl_divergence")
class KLDivergenceMetric(_OutputDistance):
    """Mean KL divergence ``KL(q_retrained || p_model)`` in nats (Kullback & Leibler 1951) between the retrained
    and the unlearned model's softmax outputs on each split given; keys ``{split}_kl_divergence``."""

    key = "kl_divergence"

    def _distance(self, p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        return kl_divergence(p, q)


@register_metric("activation_distance")
class ActivationDistanceMetric(_OutputDistance):
    """Mean L2 distance between the model's and the retrained model's output probabilities on each split
    given (Golatkar et al., ECCV 2020; Chundawat et al., AAAI 2023); keys ``{split}_activation_distance``."""

    key = "activation_distance"

    def _distance(self, p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        return activation_distance(p, q)
