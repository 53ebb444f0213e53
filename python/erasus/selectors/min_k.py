"""Min-K% Prob (Shi et al., "Detecting Pretraining Data from Large Language Models", ICLR 2024)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import InvalidInputError
from ..registry import register_selector
from ..selection import Selection
from ._common import ContextSelector, eval_mode, score_selection

__all__ = ["MinKSelector", "min_k_scores", "token_log_probs"]


def min_k_scores(logp: np.ndarray, *, k_percent: float) -> np.ndarray:
    """``Min-K%(x) = (1/|E|) sum_{x_t in E} log p(x_t | x_<t)``, ``E`` the ``ceil(k% * L)`` least likely tokens.

    ``logp`` is ``(n, T)`` with NaN on positions that are not scored (padding, prompt tokens).
    """
    scores = np.empty(logp.shape[0])
    for i, row in enumerate(logp):
        tok = np.sort(row[~np.isnan(row)])
        if tok.size == 0:
            raise InvalidInputError(f"sample {i} has no scored tokens")
        scores[i] = tok[:max(1, math.ceil(k_percent * tok.size))].mean()
    return scores


def token_log_probs(model: Any, data: Any, *, task: Any = None, batch_size: int | None = None) -> np.ndarray:
    """``log p(x_t | x_<t)`` of a causal LM on every scored token of ``data``, ``(n, T_max - 1)``, NaN elsewhere.

    Scored tokens are the targets of the causal-LM task adapter (``labels != -100``, or every non-padding token).
    """
    import torch

    from ..data import as_loader
    from ..tasks import get_task, infer_task

    t = infer_task(model, data) if task is None else get_task(task)
    if not hasattr(t, "token_log_probs"):
        raise InvalidInputError(f"Min-K% needs a causal-LM task adapter, got {t.name!r}")
    device = next(iter(model.parameters())).device
    rows: list[np.ndarray] = []
    with eval_mode(model), torch.no_grad():
        for batch in as_loader(data, batch_size=batch_size):
            batch = t.to_device(batch, device)
            logp, mask = t.token_log_probs(model, batch)
            logp = logp.double().masked_fill(~mask, float("nan")).cpu().numpy()
            rows.extend(logp)
    width = max(r.shape[0] for r in rows)
    out = np.full((len(rows), width), np.nan)
    for i, r in enumerate(rows):
        out[i, :r.shape[0]] = r
    return out


@register_selector("min_k")
class MinKSelector(ContextSelector):
    """Min-K% Prob (Shi et al., ICLR 2024): keep the texts whose ``k_percent`` least likely tokens are most likely.

    ``score(x) = mean of the ceil(k% * L) lowest log p(x_t | x_<t)``; a high score flags text the model has
    memorised (a likely member of its training data), which is what an unlearning coreset should cover.
    ``k_percent=0.2`` is the paper's best setting. ``features`` are per-token log-probabilities ``(n, T)``
    with NaN (or ``mask=False``) where a position is not scored; with ``model=`` (a Hugging Face causal LM)
    and ``data=`` (tokenized dict batches: ``input_ids``, ``attention_mask``, optional ``labels`` with -100 on
    prompt tokens) they are computed from the model's logits. ``keep="lowest"`` keeps the least likely texts.
    """

    call_inputs = ("mask",)
    allows_nan = True  # NaN marks positions that are not scored

    def __init__(self, *, seed: int = 0, k_percent: float = 0.2, keep: str = "highest",
                 batch_size: int | None = None) -> None:
        if not 0.0 < float(k_percent) <= 1.0:
            raise InvalidInputError(f"k_percent must be in (0, 1], got {k_percent}")
        if keep not in ("highest", "lowest"):
            raise InvalidInputError(f"keep must be 'highest' or 'lowest', got {keep!r}")
        super().__init__(seed=seed, k_percent=k_percent, keep=keep, batch_size=batch_size)
        self.k_percent, self.keep, self.batch_size = float(k_percent), keep, batch_size

    def _from_model(self, model: Any, data: Any, *, task: Any, context: dict[str, Any]) -> tuple[Any, Any]:
        return token_log_probs(model, data, task=task, batch_size=self.batch_size), None

    def _select(self, x: np.ndarray, k: int, *, labels: np.ndarray | None) -> Selection:
        logp = x.astype(np.float64)
        mask = self._context.get("mask")
        if mask is not None:
            mask = np.asarray(mask.detach().cpu() if hasattr(mask, "detach") else mask).astype(bool)
            if mask.shape != logp.shape:
                raise InvalidInputError(f"mask must have the features' shape {logp.shape}, got {mask.shape}")
            logp = np.where(mask, logp, np.nan)
        if np.any(np.isinf(logp)) or np.any(logp[~np.isnan(logp)] > 1e-6):
            raise InvalidInputError("features must be finite log-probabilities (<= 0); use NaN for unscored positions")
        scores = min_k_scores(logp, k_percent=self.k_percent)
        return score_selection(scores, k, largest=self.keep == "highest", metadata={"k_percent": self.k_percent})
