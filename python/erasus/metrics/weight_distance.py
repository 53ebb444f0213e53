"""Parameter-space distance to the retrained model.

Golatkar et al., "Eternal Sunshine of the Spotless Net", CVPR 2020.
"""

from __future__ import annotations

import torch

from ..errors import ErasusTypeError, InvalidInputError
from ..registry import register_metric
from .base import Metric

__all__ = ["weight_distance", "WeightDistanceMetric"]


def weight_distance(model: torch.nn.Module, reference: torch.nn.Module) -> dict[str, float]:
    """``||theta - theta_ref||_2`` over all parameters (float64), and that norm divided by ``||theta_ref||_2``.

    Parameters are matched by name; both models must have the same parameter names and shapes.
    """
    for m in (model, reference):
        if not isinstance(m, torch.nn.Module):
            raise ErasusTypeError(f"weight_distance needs two torch.nn.Module, got {type(m).__name__}")
    a, b = dict(model.named_parameters()), dict(reference.named_parameters())
    if a.keys() != b.keys():
        diff = sorted(set(a) ^ set(b))[:5]
        raise InvalidInputError(
            f"the models have different parameters (e.g. {diff}); weight distance needs one architecture")
    sq_diff = sq_ref = 0.0
    with torch.no_grad():
        for name, p in a.items():
            q = b[name]
            if p.shape != q.shape:
                raise InvalidInputError(
                    f"parameter {name!r} has shape {tuple(p.shape)} vs {tuple(q.shape)} in the reference")
            qd = q.detach().double().cpu()
            sq_diff += float(((p.detach().double().cpu() - qd) ** 2).sum())
            sq_ref += float((qd**2).sum())
    dist = sq_diff**0.5
    return {"weight_distance": dist, "weight_distance_relative": dist / sq_ref**0.5 if sq_ref > 0 else float("inf")}


@register_metric("weight_distance")
class WeightDistanceMetric(Metric):
    """L2 distance between the model's and the retrained model's parameters; keys ``weight_distance`` and
    ``weight_distance_relative`` (divided by the reference's norm). Meaningful when both start from one
    initialisation."""

    group = "forgetting"

    inputs = ()
    needs_reference = True

    def compute(self, model: torch.nn.Module, *, reference_model: torch.nn.Module) -> dict[str, float]:
        if reference_model is None:
            raise InvalidInputError("weight_distance compares with the retrained model: pass reference_model=")
        return weight_distance(model, reference_model)
