"""EL2N: the error L2-norm score (Paul, Ganguli & Dziugaite, "Deep Learning on a Data Diet", NeurIPS 2021)."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from ..errors import InvalidInputError
from ..registry import register_selector
from ..selection import Selection
from ._common import ContextSelector, as_labels, model_outputs, score_selection

__all__ = ["EL2NSelector", "el2n_scores", "softmax"]


def softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64."""
    z = np.asarray(z, dtype=np.float64)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def el2n_scores(outputs: np.ndarray, labels: np.ndarray, *, from_logits: bool = True) -> np.ndarray:
    """``EL2N(x, y) = || softmax(f(x)) - onehot(y) ||_2`` per row of ``outputs`` (logits or probabilities)."""
    p = softmax(outputs) if from_logits else np.asarray(outputs, dtype=np.float64)
    if labels.max(initial=0) >= p.shape[1]:
        raise InvalidInputError(f"a label is {labels.max()} but the outputs have only {p.shape[1]} classes")
    err = p.copy()
    err[np.arange(p.shape[0]), labels] -= 1.0
    return np.linalg.norm(err, axis=1)


@register_selector("el2n")
class EL2NSelector(ContextSelector):
    """EL2N (Paul et al., NeurIPS 2021): ``score(x, y) = E_models || p(x) - onehot(y) ||_2``; keeps the highest.

    ``features`` are logits ``(n, C)`` (or probabilities with ``from_logits=False``) and ``labels`` are required.
    With ``model=`` (one model or a list of models, e.g. several runs early in training, whose scores are
    averaged as in the paper) and ``data=``, the task adapter computes logits and labels.
    ``keep="hardest"`` (default, the paper's choice) or ``"easiest"``.
    """

    def __init__(self, *, seed: int = 0, from_logits: bool = True, keep: Literal["hardest", "easiest"] = "hardest",
                 batch_size: int | None = None) -> None:
        if keep not in ("hardest", "easiest"):
            raise InvalidInputError(f"keep must be 'hardest' or 'easiest', got {keep!r}")
        super().__init__(seed=seed, from_logits=from_logits, keep=keep, batch_size=batch_size)
        self.from_logits, self.keep, self.batch_size = bool(from_logits), keep, batch_size

    def _from_model(self, model: Any, data: Any, *, task: Any, context: dict[str, Any]) -> tuple[Any, Any]:
        models = list(model) if isinstance(model, (list, tuple)) else [model]
        scores, labels = [], None
        for m in models:
            logits, labels = model_outputs(m, data, task=task, batch_size=self.batch_size)
            y = as_labels(labels, logits.shape[0])
            scores.append(el2n_scores(logits.double().numpy(), y, from_logits=True))
        context["scores"] = np.mean(scores, axis=0)
        return np.asarray(context["scores"])[:, None], labels

    def _select(self, x: np.ndarray, k: int, *, labels: np.ndarray | None) -> Selection:
        scores = self._context.get("scores")
        if scores is None:
            scores = el2n_scores(x, as_labels(labels, x.shape[0]), from_logits=self.from_logits)
        return score_selection(scores, k, largest=self.keep == "hardest")
