"""Confidence-based SVC membership inference, "MIA-Efficacy" (Jia et al., NeurIPS 2023; Fan et al., SalUn, ICLR 2024).

Protocol of the SalUn / "Model Sparsity Can Simplify Machine Unlearning" code (``SVC_MIA``): an RBF
``SVC(C=3, gamma="auto")`` is fit on a per-sample feature of retain samples (members, 1) and test samples
(non-members, 0), the retain samples subsampled to the size of the test set; MIA-Efficacy is the fraction
of forget samples the attack predicts as **non**-members, ``1 - mean(svc.predict(forget))``. Higher means
more forgotten; SalUn's default feature is the true-class confidence ``p_y(x)``.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from sklearn.svm import SVC

from ..errors import InvalidInputError, NonFiniteError
from ..registry import register_metric
from .base import Metric
from .outputs import class_outputs

__all__ = ["mia_features", "svc_mia_efficacy", "MIAEfficacyMetric"]

Feature = Literal["confidence", "entropy", "m_entropy", "correctness", "prob"]
FEATURES = ("confidence", "entropy", "m_entropy", "correctness", "prob")


def mia_features(logits: torch.Tensor, labels: torch.Tensor, *, kind: Feature = "confidence") -> np.ndarray:
    """Per-sample attack features (N, d) of the SVC attack, as in SalUn's ``SVC_MIA``.

    ``confidence``: ``p_y``; ``entropy``: ``-sum_c p_c log p_c``; ``m_entropy`` (Song & Mittal, USENIX Sec.
    2021): ``-(1 - p_y) log p_y - sum_{c != y} p_c log(1 - p_c)``; ``correctness``: ``[argmax p = y]``;
    ``prob``: the full probability vector.
    """
    logits = torch.as_tensor(logits)
    labels = torch.as_tensor(labels)
    if logits.ndim != 2 or labels.shape != (logits.shape[0],):
        raise InvalidInputError(f"mia_features needs logits (N, C) and labels (N,), got {tuple(logits.shape)} and "
                                f"{tuple(labels.shape)}")
    if kind not in FEATURES:
        raise InvalidInputError(f"unknown MIA feature {kind!r}; expected one of {FEATURES}")
    y = labels.long().reshape(-1, 1).to(logits.device)
    logp = torch.log_softmax(logits.double(), dim=1)
    p = logp.exp()
    if kind == "confidence":
        feat = p.gather(1, y)
    elif kind == "entropy":
        feat = -(p * logp).sum(dim=1, keepdim=True)
    elif kind == "m_entropy":
        # log(1 - p) via log1p(-p) stays finite except at p == 1 exactly; clamp to the float64 epsilon
        log_1mp = torch.log1p(-p.clamp(max=1.0 - 1e-16))
        py = p.gather(1, y)
        others = (p * log_1mp).sum(dim=1, keepdim=True) - py * log_1mp.gather(1, y)
        feat = -(1.0 - py) * logp.gather(1, y) - others
    elif kind == "correctness":
        feat = (logits.argmax(dim=1, keepdim=True) == y).double()
    else:
        feat = p
    return feat.cpu().numpy()


def svc_mia_efficacy(forget_features: Any, retain_features: Any, test_features: Any, *, seed: int = 0,
                     c: float = 3.0, gamma: str | float = "auto") -> float:
    """``1 - mean(SVC.predict(forget))`` for an SVC fit on retain (1) vs test (0) features (SalUn protocol).

    The retain features are subsampled (seeded, without replacement) to the number of test samples, as
    SalUn does, so the attack sees balanced classes.
    """
    f, r, t = (np.asarray(a, dtype=np.float64) for a in (forget_features, retain_features, test_features))
    f, r, t = (a.reshape(a.shape[0], -1) if a.ndim else a.reshape(1, 1) for a in (f, r, t))
    for name, a in (("forget", f), ("retain", r), ("test", t)):
        if a.shape[0] == 0:
            raise InvalidInputError(f"MIA-efficacy needs at least one {name} sample")
        if not np.isfinite(a).all():
            raise NonFiniteError(f"the {name} attack features contain NaN or infinity")
    if not f.shape[1] == r.shape[1] == t.shape[1]:
        raise InvalidInputError(
            f"forget/retain/test features must have equal width, got {f.shape}, {r.shape}, {t.shape}")
    if r.shape[0] > t.shape[0]:
        r = r[np.sort(np.random.default_rng(seed).choice(r.shape[0], t.shape[0], replace=False))]
    clf = SVC(C=c, gamma=gamma, kernel="rbf")
    clf.fit(np.concatenate([r, t]), np.concatenate([np.ones(r.shape[0]), np.zeros(t.shape[0])]))
    return float(1.0 - clf.predict(f).mean())


@register_metric("mia_efficacy")
class MIAEfficacyMetric(Metric):
    """SalUn's MIA-Efficacy: fraction of forget samples an SVC attack (retain vs test) calls non-members.

    ``compute(model, forget, retain, test)`` -> ``{"mia_efficacy": value}``; ``feature`` picks the attack
    feature (default ``"confidence"``, SalUn's reported number).
    """

    group = "privacy"

    inputs = ("forget", "retain", "test")

    def __init__(self, *, feature: Feature = "confidence", seed: int = 0, c: float = 3.0, **options: Any) -> None:
        super().__init__(**options)
        if feature not in FEATURES:
            raise InvalidInputError(f"unknown MIA feature {feature!r}; expected one of {FEATURES}")
        self.feature = feature
        self.seed = int(seed)
        self.c = float(c)

    def compute(self, model: torch.nn.Module, forget: Any, retain: Any, test: Any) -> dict[str, float]:
        feats = []
        for data in (forget, retain, test):
            logits, labels = class_outputs(self._collect(model, data), metric="mia_efficacy")
            feats.append(mia_features(logits, labels, kind=self.feature))
        return {"mia_efficacy": svc_mia_efficacy(*feats, seed=self.seed, c=self.c)}
