"""Entropy logistic-regression membership inference, the protocol of SSD's and bad teaching's evaluations.

Chundawat et al. ("Can Bad Teaching Induce Forgetting?", AAAI 2023, vikram2000b/bad-teaching-unlearning) and
Foster et al. (SSD, AAAI 2024; if-loops/selective-synaptic-dampening ``src/metrics.py``,
``get_membership_attack_prob``) fit ``LogisticRegression(class_weight="balanced", solver="lbfgs",
multi_class="multinomial")`` on the prediction entropy ``H(x) = -sum_c p_c(x) log p_c(x)`` of every retain
sample (members, label 1) and every test sample (non-members, label 0), and report the fraction of forget
samples the attack calls members.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score, roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict

from ..errors import InvalidInputError
from ..registry import register_metric
from .attack import as_scores
from .base import Metric

__all__ = ["prediction_entropy", "entropy_mia", "MIAMetric"]


def prediction_entropy(logits: torch.Tensor) -> torch.Tensor:
    """``H = -sum_c p_c log p_c`` of ``softmax(logits)`` per row, computed from log-softmax (float64)."""
    logits = torch.as_tensor(logits)
    if logits.ndim != 2:
        raise InvalidInputError(f"prediction_entropy needs logits (N, C), got {tuple(logits.shape)}")
    logp = torch.log_softmax(logits.double(), dim=1)
    return -(logp.exp() * logp).sum(dim=1)


def _attack() -> LogisticRegression:
    # the reference code's two-class multinomial fit puts an L2 penalty on both classes' rows, whose optimum is
    # w_1 = -w_0 = w/2: the binomial fit with C doubled gives the same decisions (scikit-learn >= 1.8 no longer
    # offers multi_class="multinomial" for two classes)
    return LogisticRegression(class_weight="balanced", solver="lbfgs", C=2.0)


def entropy_mia(forget_entropy: Any, test_entropy: Any, retain_entropy: Any = None, *, seed: int = 0,
                n_splits: int = 5) -> dict[str, float]:
    """The SSD / bad-teaching entropy attack on per-sample entropies.

    With ``retain_entropy`` (the published protocol): ``mia_accuracy`` is the fraction of forget samples
    predicted members by the attack fit on all of retain (members) vs all of test (non-members), exactly the
    reference ``get_membership_attack_prob``. The reference reports nothing else; erasus adds
    ``mia_auc``/``mia_balanced_accuracy`` of the attack on forget vs test, which must not score test samples the
    attack was fit on: a second attack is fit on retain vs a seeded half of test and scored on forget vs the
    other half (so they need >= 2 test samples).

    Without retain, no known members exist besides the forget set, so the attack is cross-fitted: stratified
    ``n_splits``-fold logistic regressions on forget (label 1) vs test (label 0), each sample predicted by the
    fold model that did not see it. ``mia_accuracy`` is then the out-of-fold fraction of forget predicted
    members (~0.5 when forget is indistinguishable from test, 1.0 when perfectly separable), and
    ``mia_auc``/``mia_balanced_accuracy`` the out-of-fold AUC/balanced accuracy. The two protocols answer
    different questions; compare numbers only within one.
    """
    f = as_scores(forget_entropy, what="forget entropies")
    t = as_scores(test_entropy, what="test entropies")
    if retain_entropy is not None:
        r = as_scores(retain_entropy, what="retain entropies")
        if t.size < 2:
            raise InvalidInputError(f"the test set needs at least 2 samples (fit + held-out halves), got {t.size}")
        members = np.ones(r.size)
        published = _attack().fit(np.concatenate([r, t])[:, None], np.concatenate([members, np.zeros(t.size)]))
        perm = np.random.default_rng(seed).permutation(t.size)
        fit_t, held_t = t[perm[: t.size // 2]], t[perm[t.size // 2:]]
        clf = _attack().fit(np.concatenate([r, fit_t])[:, None], np.concatenate([members, np.zeros(fit_t.size)]))
        x_eval = np.concatenate([f, held_t])[:, None]
        y_eval = np.concatenate([np.ones(f.size), np.zeros(held_t.size)])
        pred = clf.predict(x_eval)
        proba = clf.predict_proba(x_eval)[:, 1]
        return {
            "mia_accuracy": float(published.predict(f[:, None]).mean()),
            "mia_auc": float(roc_auc_score(y_eval, proba)),
            "mia_balanced_accuracy": float(balanced_accuracy_score(y_eval, pred)),
        }
    folds = min(n_splits, f.size, t.size)
    if folds < 2:
        raise InvalidInputError(
            f"without retain data the attack is cross-fitted and needs >= 2 forget and >= 2 test samples, got "
            f"{f.size} and {t.size}; or pass retain="
        )
    x = np.concatenate([f, t])[:, None]
    y = np.concatenate([np.ones(f.size), np.zeros(t.size)])
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    proba = cross_val_predict(_attack(), x, y, cv=cv, method="predict_proba")[:, 1]
    pred = (proba > 0.5).astype(np.float64)  # as LogisticRegression.predict: a tie is not a member
    return {
        "mia_accuracy": float(pred[: f.size].mean()),
        "mia_auc": float(roc_auc_score(y, proba)),
        "mia_balanced_accuracy": float(balanced_accuracy_score(y, pred)),
    }


@register_metric("mia")
class MIAMetric(Metric):
    """Entropy logistic-regression MIA (SSD / bad-teaching protocol): ``compute(model, forget, test, retain=None)``.

    Keys ``mia_accuracy`` (fraction of forget predicted member: the number SSD's tables report; lower
    means more forgotten, the retrained model's value is the target), ``mia_auc``, ``mia_balanced_accuracy``.
    See :func:`entropy_mia` for the protocol with and without ``retain``. On a CLIP-style model (the
    ``"contrastive"`` task) the entropy is that of each pair's image->text and text->image softmax against a fixed
    bank of test pairs (:func:`erasus.metrics.contrastive.bank_scores`).
    """

    group = "privacy"

    inputs = ("forget", "test", "retain")

    def __init__(self, *, seed: int = 0, n_splits: int = 5, **options: Any) -> None:
        super().__init__(**options)
        self.seed = int(seed)
        self.n_splits = int(n_splits)

    def _entropy(self, model: torch.nn.Module, data: Any) -> torch.Tensor:
        return prediction_entropy(self._collect(model, data).logits)

    def compute(self, model: torch.nn.Module, forget: Any, test: Any, retain: Any = None) -> dict[str, float]:
        from .outputs import resolve_task

        if resolve_task(model, forget, self.task).name == "contrastive":
            # in-batch (B, B) logits have a batch-size-dependent entropy; score every pair against one bank of
            # test pairs instead (see erasus.metrics.contrastive.bank_scores)
            from .contrastive import contrastive_membership_scores

            scores = contrastive_membership_scores(model, {"forget": forget, "test": test, "retain": retain},
                                                   task=self.task, batch_size=self.batch_size, device=self.device,
                                                   seed=self.seed)
            return entropy_mia(scores["forget"][1], scores["test"][1],
                               None if retain is None else scores["retain"][1], seed=self.seed, n_splits=self.n_splits)
        return entropy_mia(
            self._entropy(model, forget),
            self._entropy(model, test),
            None if retain is None else self._entropy(model, retain),
            seed=self.seed,
            n_splits=self.n_splits,
        )
