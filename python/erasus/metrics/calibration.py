"""Expected calibration error (Guo et al., ICML 2017)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..errors import InvalidInputError
from ..registry import register_metric
from .base import Metric
from .outputs import class_outputs

__all__ = ["expected_calibration_error", "ECEMetric"]


def expected_calibration_error(logits: torch.Tensor, labels: torch.Tensor, *, n_bins: int = 15) -> float:
    """ECE = sum_b |B_b|/n * |acc(B_b) - conf(B_b)| over ``n_bins`` equal-width confidence bins.

    Confidence is the max softmax probability; bin ``b`` holds confidences in ``(b/n_bins, (b+1)/n_bins]``
    (Guo et al., "On Calibration of Modern Neural Networks", ICML 2017, eq. 3).
    """
    logits = torch.as_tensor(logits)
    labels = torch.as_tensor(labels)
    if logits.ndim != 2 or labels.shape != (logits.shape[0],) or logits.shape[0] == 0:
        raise InvalidInputError(
            f"ECE needs logits (N, C) and labels (N,) with N > 0, got {tuple(logits.shape)} and {tuple(labels.shape)}"
        )
    if not isinstance(n_bins, int) or n_bins < 1:
        raise InvalidInputError(f"n_bins must be a positive int, got {n_bins!r}")
    probs = torch.softmax(logits.double(), dim=1)
    conf, pred = probs.max(dim=1)
    correct = (pred == labels.to(pred.device)).double().cpu().numpy()
    conf_np = conf.cpu().numpy()
    # right-closed bins: a confidence of exactly b/n_bins belongs to bin b-1, as in Guo et al.
    bins = np.clip(np.ceil(conf_np * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    acc_sum = np.bincount(bins, weights=correct, minlength=n_bins)
    conf_sum = np.bincount(bins, weights=conf_np, minlength=n_bins)
    return float(np.abs(acc_sum - conf_sum).sum() / conf_np.shape[0])


@register_metric("ece")
class ECEMetric(Metric):
    """Expected calibration error of a classifier on each split given; keys ``{split}_ece``."""

    inputs = ("forget", "retain", "test")

    def __init__(self, *, n_bins: int = 15, **options: Any) -> None:
        super().__init__(**options)
        if not isinstance(n_bins, int) or n_bins < 1:
            raise InvalidInputError(f"n_bins must be a positive int, got {n_bins!r}")
        self.n_bins = n_bins

    def compute(self, model: torch.nn.Module, forget: Any = None, retain: Any = None, test: Any = None
                ) -> dict[str, float]:
        splits = {"forget": forget, "retain": retain, "test": test}
        if all(v is None for v in splits.values()):
            raise InvalidInputError("ece needs at least one of forget=, retain=, test=")
        out = {}
        for split, data in splits.items():
            if data is not None:
                logits, labels = class_outputs(self._collect(model, data), metric="ece")
                out[f"{split}_ece"] = expected_calibration_error(logits, labels, n_bins=self.n_bins)
        return out
