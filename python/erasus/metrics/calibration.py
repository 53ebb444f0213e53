"""Expected calibration error (Guo et al., ICML 2017)."""

from __future__ import annotations

import abc
from typing import Any

import numpy as np
import torch

from ..errors import InvalidInputError
from ..registry import register_metric
from .base import Metric
from .classification import SplitMetric
from .outputs import class_outputs

__all__ = ["expected_calibration_error", "ECEMetric", "brier_score", "maximum_calibration_error",
           "adaptive_calibration_error", "MCEMetric", "ACEMetric", "BrierMetric"]


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


def _probs(logits: Any, labels: Any, what: str) -> tuple[np.ndarray, np.ndarray]:
    logits, labels = torch.as_tensor(logits), torch.as_tensor(labels).long()
    if logits.ndim != 2 or labels.shape != (logits.shape[0],) or logits.shape[0] == 0:
        raise InvalidInputError(
            f"{what} needs logits (N, C) and labels (N,) with N > 0, got {tuple(logits.shape)} and {tuple(labels.shape)}"
        )
    if labels.min() < 0 or labels.max() >= logits.shape[1]:
        raise InvalidInputError(f"{what}: labels must lie in [0, {logits.shape[1] - 1}], got range "
                                f"[{int(labels.min())}, {int(labels.max())}]")
    return torch.softmax(logits.double(), dim=1).cpu().numpy(), labels.cpu().numpy()


def brier_score(logits: Any, labels: Any) -> float:
    """Multi-class Brier score ``(1/N) sum_i sum_c (p_ic - [y_i = c])^2`` (Brier 1950), in [0, 2]."""
    p, y = _probs(logits, labels, "brier_score")
    onehot = np.eye(p.shape[1])[y]
    return float(((p - onehot) ** 2).sum(1).mean())


def maximum_calibration_error(logits: Any, labels: Any, *, n_bins: int = 15) -> float:
    """MCE = max over non-empty equal-width confidence bins of ``|acc(B) - conf(B)|`` (Naeini et al., AAAI 2015)."""
    if not isinstance(n_bins, int) or n_bins < 1:
        raise InvalidInputError(f"n_bins must be a positive int, got {n_bins!r}")
    p, y = _probs(logits, labels, "maximum_calibration_error")
    conf, correct = p.max(1), (p.argmax(1) == y).astype(np.float64)
    bins = np.clip(np.ceil(conf * n_bins).astype(np.int64) - 1, 0, n_bins - 1)  # right-closed, as ECE
    count = np.bincount(bins, minlength=n_bins)
    gap = np.abs(np.bincount(bins, weights=correct, minlength=n_bins) - np.bincount(bins, weights=conf, minlength=n_bins))
    nonempty = count > 0
    return float((gap[nonempty] / count[nonempty]).max())


def adaptive_calibration_error(logits: Any, labels: Any, *, n_bins: int = 15) -> float:
    """ACE: ECE over ``n_bins`` equal-mass bins of the top-class confidence (Nixon et al., CVPR-W 2019).

    Samples are sorted by confidence and split into ``n_bins`` contiguous groups of (almost) equal size
    (``numpy.array_split``); ``ACE = sum_b |B_b| / N |acc(B_b) - conf(B_b)|``.
    """
    if not isinstance(n_bins, int) or n_bins < 1:
        raise InvalidInputError(f"n_bins must be a positive int, got {n_bins!r}")
    p, y = _probs(logits, labels, "adaptive_calibration_error")
    conf, correct = p.max(1), (p.argmax(1) == y).astype(np.float64)
    order = np.argsort(conf, kind="stable")
    total = 0.0
    for group in np.array_split(order, min(n_bins, conf.size)):
        total += abs(correct[group].sum() - conf[group].sum())
    return float(total / conf.size)


class _BinnedSplitMetric(SplitMetric):
    key = ""

    def __init__(self, *, n_bins: int = 15, **options: Any) -> None:
        super().__init__(**options)
        if not isinstance(n_bins, int) or n_bins < 1:
            raise InvalidInputError(f"n_bins must be a positive int, got {n_bins!r}")
        self.n_bins = n_bins

    @abc.abstractmethod
    def _value(self, logits: torch.Tensor, labels: torch.Tensor) -> float:
        """The metric on one split's logits and labels."""


@register_metric("mce")
class MCEMetric(_BinnedSplitMetric):
    """Maximum calibration error (Naeini, Cooper & Hauskrecht, AAAI 2015) on each split; keys ``{split}_mce``."""

    key = "mce"

    def _value(self, logits: torch.Tensor, labels: torch.Tensor) -> float:
        return maximum_calibration_error(logits, labels, n_bins=self.n_bins)


@register_metric("ace")
class ACEMetric(_BinnedSplitMetric):
    """Adaptive (equal-mass) calibration error (Nixon et al., CVPR Workshops 2019) on each split; keys ``{split}_ace``."""

    key = "ace"

    def _value(self, logits: torch.Tensor, labels: torch.Tensor) -> float:
        return adaptive_calibration_error(logits, labels, n_bins=self.n_bins)


@register_metric("brier")
class BrierMetric(SplitMetric):
    """Multi-class Brier score (Brier 1950) of the softmax outputs on each split; keys ``{split}_brier``."""

    key, fn = "brier", staticmethod(brier_score)
