"""Rank-aggregation ensembles of selectors: Borda count (de Borda 1781; Dwork et al., "Rank Aggregation Methods for the
Web", WWW 2001) and reciprocal rank fusion (Cormack, Clarke & Buettcher, SIGIR 2009)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np

from ..errors import ErasusTypeError, InvalidInputError
from ..registry import get_selector, register_selector
from ..selection import Selection, as_features, resolve_k
from ._common import ContextSelector, plain
from .base import Selector

__all__ = ["VotingSelector", "fuse_rankings"]


def fuse_rankings(rankings: Sequence[np.ndarray], n: int, *, rule: Literal["borda", "rrf"] = "borda",
                  weights: Sequence[float] | None = None, rrf_k: float = 60.0, depth: int | None = None) -> np.ndarray:
    """Fused score per item from ranked index lists (best first).

    Borda: ``sum_m w_m (D - r_m(i))`` with 0-based rank ``r_m`` and list length ``D``; items a list does not
    rank get 0 from it. RRF: ``sum_m w_m / (rrf_k + r_m(i) + 1)``; unranked items get 0.
    """
    w = np.ones(len(rankings)) if weights is None else np.asarray(weights, dtype=np.float64)
    score = np.zeros(n)
    for wm, r in zip(w, rankings):
        r = np.asarray(r, dtype=np.int64)
        pos = np.arange(r.shape[0], dtype=np.float64)
        if rule == "borda":
            score[r] += wm * ((depth or r.shape[0]) - pos)
        else:
            score[r] += wm / (rrf_k + pos + 1.0)
    return score


@register_selector("voting")
class VotingSelector(ContextSelector):
    """Voting ensemble: run several selectors, fuse their rankings by Borda count or reciprocal rank fusion.

    ``selectors``: registry names, ``(name, options)`` pairs or :class:`Selector` instances; every member sees
    the same ``features``/``labels`` (or ``model``/``data``) and per-call inputs. Each member ranks its top
    ``depth`` items (default ``n``: full rankings; smaller is cheaper for greedy geometric members), then
    ``rule="borda"`` scores ``sum_m w_m (depth - rank_m(i))`` and ``rule="rrf"`` scores
    ``sum_m w_m / (rrf_k + rank_m(i))`` (1-based ranks, ``rrf_k=60`` as in Cormack et al. 2009); the ``k``
    best fused scores win, ties broken by index. ``weights`` weigh the members (default equal).
    """

    def __init__(self, *, seed: int = 0, selectors: Sequence[Any] = (), rule: Literal["borda", "rrf"] = "borda",
                 weights: Sequence[float] | None = None, rrf_k: float = 60.0, depth: int | None = None) -> None:
        if rule not in ("borda", "rrf"):
            raise InvalidInputError(f"rule must be 'borda' or 'rrf', got {rule!r}")
        if not selectors or isinstance(selectors, (str, Selector)):
            raise InvalidInputError("selectors must be a non-empty list of names, (name, options) pairs or Selectors")
        if weights is not None and (len(weights) != len(selectors) or any(w < 0 for w in weights)):
            raise InvalidInputError(f"weights must be {len(selectors)} non-negative numbers, one per selector")
        if rrf_k < 0 or (depth is not None and int(depth) < 1):
            raise InvalidInputError(f"need rrf_k >= 0 and depth >= 1, got {rrf_k} and {depth}")
        super().__init__(seed=seed, selectors=list(selectors), rule=rule, weights=weights, rrf_k=rrf_k, depth=depth)
        self.members = [self._member(m, seed) for m in selectors]
        self.rule, self.weights, self.rrf_k, self.depth = rule, weights, float(rrf_k), depth

    @staticmethod
    def _member(spec: Any, seed: int) -> Selector:
        if isinstance(spec, Selector):
            return spec
        if isinstance(spec, str):
            return get_selector(spec, seed=seed)
        if isinstance(spec, (tuple, list)) and len(spec) == 2 and isinstance(spec[0], str) and isinstance(spec[1], Mapping):
            return get_selector(spec[0], **{"seed": seed, **spec[1]})
        raise ErasusTypeError(f"a voting member must be a name, a (name, options) pair or a Selector, got {spec!r}")

    def select(self, k: int | None = None, *, features: Any = None, model: Any = None, data: Any = None,
               ratio: float | None = None, labels: Any = None, task: Any = None, **inputs: Any) -> Selection:
        """Run every member on the same inputs and fuse their rankings (see the class docstring)."""
        if features is not None:
            n = as_features(features).shape[0]
            common: dict[str, Any] = {"features": features}
        elif model is not None and data is not None:
            from ..data import num_samples

            n = num_samples(data)
            common = {"model": model, "data": data}
        else:
            raise InvalidInputError("voting.select() needs features=..., or both model=... and data=...")
        k = resolve_k(n, k, ratio=ratio)
        depth = n if self.depth is None else min(n, max(k, int(self.depth)))
        accepted = {key for m in self.members if isinstance(m, ContextSelector) for key in m.call_inputs}
        unused = sorted(set(inputs) - accepted)
        if unused:
            raise InvalidInputError(f"no member of this vote takes the inputs {unused}; they take {sorted(accepted)}")
        rankings, names = [], []
        for member in self.members:
            kwargs = dict(common, labels=labels)
            if isinstance(member, ContextSelector):
                kwargs.update({key: v for key, v in inputs.items() if key in member.call_inputs}, task=task)
            sel = member.select(depth, **kwargs)
            if sel.indices.size and (sel.indices.min() < 0 or sel.indices.max() >= n):
                raise InvalidInputError(f"member {sel.method!r} returned indices outside [0, {n})")
            rankings.append(sel.indices)
            names.append(sel.method or type(member).__name__)
        fused = fuse_rankings(rankings, n, rule=self.rule, weights=self.weights, rrf_k=self.rrf_k, depth=depth)
        order = np.argsort(-fused, kind="stable")[:k]
        return Selection(order, np.ones(k, dtype=np.float32), gains=fused[order], method=self.registry_name,
                         metadata=plain({"scores": fused, "rule": self.rule, "members": names,
                                         "member_rankings": rankings}))

    def _select(self, x: np.ndarray, k: int, *, labels: np.ndarray | None) -> Selection:
        return self.select(k, features=x, labels=labels)
