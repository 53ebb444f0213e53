"""The auto-selector: pick a selector and its options from the modality, n, d, k and a compute budget.

The rule is based on our own small measurement (``benches/python/auto_rule_measurement.py``; the unlearning
benchmark's ``benches/unlearning/RESULTS.md`` did not exist when it was written): scikit-learn digits, an MLP at
97 % test accuracy, forget sets of 300 samples (3 seeds), gradient ascent (10 steps, lr 0.02, weighted mean loss)
on each selector's coreset versus on the whole forget set. Two outcomes were measured:

* ``gap`` = |forget loss after coreset GA - after full GA| / |full GA's change|, i.e. how closely the coreset
  reproduces the full forget set's unlearning effect with unchanged hyperparameters (lower is better):
  moderate 0.51 / 0.32 / 0.48 at ratios 0.05 / 0.1 / 0.2, random 0.51 / 0.67 / 0.29, upcore 1.18 / 0.86 / 0.26,
  facility location 0.78 / 0.76 / 0.33, submodular 0.92 / 0.68 / 0.41, CRAIG 0.93 / 0.85 / 0.63,
  k-means 1.24 / 0.61 / 0.54, k-center 0.74 / 0.97 / 1.31, herding 2.40 / 1.31 / 0.52; every score selector
  that keeps the hardest samples (EL2N, GraNd, TracIn, influence, uncertainty, GLISTER, representer) overshoots
  by 4-18x and GRAD-MATCH by 28-43x (its weights match a gradient *sum* that is near zero at a trained model).
* ``cos`` = cosine between the coreset's and the forget set's mean loss gradient (the direction of the first
  unlearning step, higher is better): EL2N 0.86 / 0.96 / 1.00, uncertainty 0.83 / 0.96 / 1.00, GLISTER
  0.86 / 0.94 / 0.98, GraNd = TracIn 0.85 / 0.95 / 1.00; moderate 0.22 / 0.31 / 0.42, random 0.12 / 0.20 / 0.33.

It is a small measurement (one dataset, one model, 3 seeds): the rule should be revisited against the unlearning
benchmark once its results exist. The expensive selectors (influence 4.7 s, representer 1.6 s, valuation network 0.6 s per selection on 300
samples) never won either outcome, so the budget only decides whether a model pass over the data is affordable.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from ..errors import InvalidInputError
from ..registry import get_selector, register_selector
from ..selection import Selection, as_features, resolve_k
from ._common import ContextSelector, model_outputs, plain

__all__ = ["AutoSelector", "choose_selector"]

Budget = Literal["low", "medium", "high"]
Objective = Literal["match", "direction"]

#: above this many samples a "low" budget skips every model pass over the data
LOW_BUDGET_MAX_N = 100_000


def choose_selector(*, n: int, k: int, d: int | None, modality: str, budget: Budget = "medium",
                    objective: Objective = "match", available: frozenset[str] = frozenset({"embeddings"}),
                    has_labels: bool = False) -> tuple[str, dict[str, Any], str, str]:
    """The documented rule; returns ``(selector, options, feature kind, reason)``.

    1. ``k >= n``: ``"full"`` (nothing to prune).
    2. ``budget="low"`` with ``n > 100_000`` samples and no precomputed features: ``"random"`` (no model pass).
    3. ``objective="match"`` (reproduce the full forget set's unlearning effect at unchanged hyperparameters):
       ratio ``k/n < 0.15``: ``"moderate"`` on embeddings (lowest gap at ratios 0.05 and 0.1); otherwise
       ``"random"`` (lowest gap at 0.2, with upcore, at a fraction of its cost).
    4. ``objective="direction"`` (align the first unlearning step with the full forget gradient):
       causal-LM text: ``"min_k"`` keeping the *least* likely texts (Min-K% with ``keep="lowest"``, the
       token-level analogue of EL2N's high-error samples; not covered by the measurement);
       with labels: ``"el2n"`` on logits (best cosine at every ratio, one forward pass);
       else ``"uncertainty"`` (entropy) on logits.
    A choice whose feature kind is not ``available`` falls back to ``"random"``, saying so.
    """
    ratio = k / n
    shape = f"n={n}, d={d if d is not None else '?'}, k={k} (ratio {ratio:.3f}), modality={modality}, budget={budget}"
    if k >= n:
        return "full", {}, "none", f"{shape}: k >= n, nothing to prune"
    if budget == "low" and n > LOW_BUDGET_MAX_N and available >= {"embeddings", "logits", "gradients"}:
        return "random", {}, "none", (f"{shape}: a low budget with n > {LOW_BUDGET_MAX_N} rules out a model pass over "
                                      "the data; random is the best measured selector that needs none")
    if objective == "match":
        if ratio < 0.15:
            name, kind, why = "moderate", "embeddings", ("lowest measured unlearning-effect gap at ratios 0.05 and 0.1 "
                                                         "(0.51 / 0.32 vs random 0.51 / 0.67)")
        else:
            name, kind, why = "random", "none", ("lowest measured unlearning-effect gap at ratio 0.2 (0.29 vs "
                                                 "moderate 0.48), at no cost")
        opts: dict[str, Any] = {}
    elif modality == "text":
        name, kind, opts = "min_k", "token_log_probs", {"keep": "lowest", "k_percent": 0.2}
        why = "least likely texts under the LM: the causal-LM analogue of high-error samples (not measured)"
    elif has_labels:
        name, kind, opts = "el2n", "logits", {}
        why = "best measured cosine to the full forget gradient (0.86 / 0.96 / 1.00 at ratios 0.05 / 0.1 / 0.2)"
    else:
        name, kind, opts = "uncertainty", "logits", {"measure": "entropy"}
        why = "no labels for EL2N; uncertainty had the next-best measured cosine (0.83 / 0.96 / 1.00)"
    if kind != "none" and kind not in available:
        return "random", {}, "none", (f"{shape}: would pick {name} ({why}) but it needs {kind} features, and only "
                                      f"{sorted(available)} are available; random instead")
    return name, opts, kind, f"{shape}: {name}: {why}"


def _has_labels(model: Any, data: Any, task: Any) -> bool:
    """Whether the task adapter finds per-sample labels in the first batch of ``data`` (no model pass)."""
    from ..data import as_loader
    from ..tasks import get_task, infer_task

    t = infer_task(model, data) if task is None else get_task(task)
    try:
        t.labels(next(iter(as_loader(data, batch_size=1))))
    except (InvalidInputError, StopIteration):
        return False
    return True


@register_selector("auto")
class AutoSelector(ContextSelector):
    """Auto-selector: picks a selector + options by the measured rule in :func:`choose_selector` and runs it.

    ``objective="match"`` (default) reproduces the full forget set's unlearning effect; ``"direction"`` aligns
    the coreset gradient with the forget set's. ``budget`` ``"low" | "medium" | "high"``. With ``features=``
    say what they are with ``feature_kind`` (``"embeddings"`` default, ``"logits"``, ``"gradients"`` or
    ``"token_log_probs"``); with ``model=``/``data=`` every kind can be computed and the modality is inferred
    from the task adapter (``"text"`` for causal LMs). ``Selection.metadata['auto']`` holds the choice, its
    options and the reason; the rest of the metadata is the chosen selector's.
    """

    def __init__(self, *, seed: int = 0, budget: Budget = "medium", objective: Objective = "match",
                 feature_kind: str = "embeddings", modality: str | None = None) -> None:
        if budget not in ("low", "medium", "high"):
            raise InvalidInputError(f"budget must be 'low', 'medium' or 'high', got {budget!r}")
        if objective not in ("match", "direction"):
            raise InvalidInputError(f"objective must be 'match' or 'direction', got {objective!r}")
        if feature_kind not in ("embeddings", "logits", "gradients", "token_log_probs"):
            raise InvalidInputError("feature_kind must be 'embeddings', 'logits', 'gradients' or 'token_log_probs', "
                                    f"got {feature_kind!r}")
        super().__init__(seed=seed, budget=budget, objective=objective, feature_kind=feature_kind, modality=modality)
        self.budget, self.objective, self.feature_kind, self.modality = budget, objective, feature_kind, modality

    def select(self, k: int | None = None, *, features: Any = None, model: Any = None, data: Any = None,
               ratio: float | None = None, labels: Any = None, task: Any = None, **inputs: Any) -> Selection:
        """Choose a selector for these inputs (see :func:`choose_selector`) and run it."""
        if inputs:
            raise InvalidInputError(f"auto.select() takes no per-call inputs ({sorted(inputs)}): the selector it picks "
                                    "works from features or model + data alone")
        if features is not None:
            # token log-probabilities mark unscored positions with NaN (see min_k)
            x = as_features(features, allow_nan=self.feature_kind == "token_log_probs")
            n, d = int(x.shape[0]), int(x.shape[1])
            available = frozenset({self.feature_kind})
            modality = self.modality or ("text" if self.feature_kind == "token_log_probs" else "generic")
        elif model is not None and data is not None:
            from ..data import num_samples
            from ..tasks import get_task, infer_task

            n, d = num_samples(data), None
            available = frozenset({"embeddings", "logits", "gradients", "token_log_probs"})
            family = (infer_task(model, data) if task is None else get_task(task)).name
            modality = self.modality or {"causal_lm": "text", "contrastive": "vision_language"}.get(family, family)
            if modality != "text":
                available -= {"token_log_probs"}
            model_labels = modality != "text" and _has_labels(model, data, task)
        else:
            raise InvalidInputError("auto.select() needs features=..., or both model=... and data=...")
        k = resolve_k(n, k, ratio=ratio)
        name, opts, kind, reason = choose_selector(n=n, k=k, d=d, modality=modality, budget=self.budget,
                                                   objective=self.objective, available=available,
                                                   has_labels=labels is not None or (features is None and model_labels))
        chosen = get_selector(name, seed=self.seed, **opts)
        if features is not None:
            sel = chosen.select(k, features=x, labels=labels)
        elif kind == "embeddings":
            from .. import features as feats

            emb = feats.embeddings(model, data, task=task, progress=False)
            if labels is None and modality != "text":
                labels = model_outputs(model, data, task=task)[1]
            sel = chosen.select(k, features=emb, labels=labels)
        elif kind == "none":
            sel = chosen.select(k, features=np.zeros((n, 1), dtype=np.float32))
        else:
            sel = chosen.select(k, model=model, data=data, labels=labels, task=task)
        meta = plain(dict(sel.metadata))
        meta["auto"] = {"choice": name, "options": opts, "features": kind, "reason": reason}
        return Selection(sel.indices, sel.weights, sel.gains, sel.objective, self.registry_name, meta)

    def _select(self, x: np.ndarray, k: int, *, labels: np.ndarray | None) -> Selection:
        return self.select(k, features=x, labels=labels)
