"""GraNd: the expected gradient-norm score (Paul, Ganguli & Dziugaite, NeurIPS 2021)."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from ..errors import InvalidInputError
from ..registry import register_selector
from ..selection import Selection
from ._common import ContextSelector, score_selection

__all__ = ["GraNdSelector"]


@register_selector("grand")
class GraNdSelector(ContextSelector):
    """GraNd (Paul et al., NeurIPS 2021): ``score(x, y) = E_models || grad_theta l(f(x), y) ||_2``; keeps the highest.

    ``features`` are per-sample gradients ``(n, p)`` (their row norms are the scores) or precomputed norms
    ``(n, 1)``. With ``model=`` (one model or a list, scores averaged over them) and ``data=`` the norms come
    from :func:`erasus.features.per_sample_grad_norms`; ``feature_options`` are passed to it.
    """

    def __init__(self, *, seed: int = 0, keep: Literal["hardest", "easiest"] = "hardest",
                 feature_options: dict[str, Any] | None = None) -> None:
        if keep not in ("hardest", "easiest"):
            raise InvalidInputError(f"keep must be 'hardest' or 'easiest', got {keep!r}")
        super().__init__(seed=seed, keep=keep, feature_options=feature_options)
        self.keep, self.feature_options = keep, dict(feature_options or {})

    def _from_model(self, model: Any, data: Any, *, task: Any, context: dict[str, Any]) -> tuple[Any, Any]:
        from .. import features

        models = list(model) if isinstance(model, (list, tuple)) else [model]
        norms = [np.asarray(features.per_sample_grad_norms(m, data, task=task, **self.feature_options).cpu(),
                            dtype=np.float64).reshape(-1) for m in models]
        return np.mean(norms, axis=0)[:, None], None

    def _select(self, x: np.ndarray, k: int, *, labels: np.ndarray | None) -> Selection:
        scores = np.linalg.norm(x.astype(np.float64), axis=1)
        return score_selection(scores, k, largest=self.keep == "hardest")
