"""Representer point selection (Yeh, Kim, Yen & Ravikumar, "Representer Point Selection for Explaining Deep Neural
Networks", NeurIPS 2018)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InvalidInputError
from ..registry import register_selector
from ..selection import Selection
from ._common import ContextSelector, as_array, as_labels, head_inputs, score_selection
from .el2n import softmax

__all__ = ["RepresenterSelector", "fit_l2_head", "representer_alphas"]


def fit_l2_head(f: np.ndarray, y: np.ndarray, n_classes: int, *, l2: float, init: np.ndarray | None = None
                ) -> tuple[np.ndarray, float]:
    """``W* = argmin_W (1/n) sum_i CE(W f_i, y_i) + l2 ||W||^2`` (L-BFGS) and the gradient norm left at ``W*``.

    Yeh et al. fine-tune the last layer this way so that it sits at a stationary point, where the representer
    theorem holds exactly.
    """
    from scipy.optimize import minimize

    n, d = f.shape
    onehot = np.eye(n_classes)[y]

    def objective(w_flat: np.ndarray) -> tuple[float, np.ndarray]:
        w = w_flat.reshape(n_classes, d)
        z = f @ w.T
        zmax = z.max(axis=1, keepdims=True)
        lse = zmax[:, 0] + np.log(np.exp(z - zmax).sum(axis=1))
        loss = float(np.mean(lse - z[np.arange(n), y]) + l2 * (w * w).sum())
        grad = (softmax(z) - onehot).T @ f / n + 2 * l2 * w
        return loss, grad.ravel()

    w0 = np.zeros(n_classes * d) if init is None else np.asarray(init, dtype=np.float64).ravel()
    res = minimize(objective, w0, jac=True, method="L-BFGS-B", options={"maxiter": 5000, "gtol": 1e-10, "ftol": 1e-15})
    return res.x.reshape(n_classes, d), float(np.linalg.norm(objective(res.x)[1]))


def representer_alphas(logits: np.ndarray, y: np.ndarray, *, l2: float) -> np.ndarray:
    """``alpha_i = -1 / (2 l2 n) dL(Phi_i, y_i) / dPhi_i = -(softmax(Phi_i) - onehot(y_i)) / (2 l2 n)``, shape (n, C)."""
    n, c = logits.shape
    return -(softmax(logits) - np.eye(c)[y]) / (2.0 * l2 * n)


@register_selector("representer")
class RepresenterSelector(ContextSelector):
    """Representer points (Yeh et al., NeurIPS 2018): ``Phi(x_t) = sum_i alpha_i f_i^T f_t``; keeps the strongest representers.

    For a last layer ``Phi = W f`` at a stationary point of ``(1/n) sum_i L(Phi_i, y_i) + l2 ||W||^2`` the
    theorem gives ``W = sum_i alpha_i f_i^T`` with ``alpha_i = -1/(2 l2 n) dL/dPhi_i``. Without a target a
    sample's score is ``|alpha_{i, y_i}|`` (the paper's global importance); with ``target_features=`` ``f_t``
    (and ``target_labels=``, default the predicted classes) it is ``mean_t alpha_{i, c_t} f_i^T f_t``, the
    sample's contribution to the target predictions. ``features`` are the last layer's inputs ``f`` (n, d)
    with ``labels``; ``refit=True`` (default, as in the paper) first fits the L2-regularised last layer on them
    (from ``head=`` ``W (C, d)`` when given); ``refit=False`` uses ``logits=`` (n, C) as they are. With
    ``model=``/``data=`` the inputs, logits and weights of the model's last linear layer are used.
    """

    call_inputs = ("target", "target_features", "target_labels", "logits", "head")

    def __init__(self, *, seed: int = 0, l2: float = 1e-3, refit: bool = True, layer: str | None = None,
                 batch_size: int | None = None) -> None:
        if l2 <= 0:
            raise InvalidInputError(f"l2 must be > 0 (the representer theorem needs the L2 penalty), got {l2}")
        super().__init__(seed=seed, l2=l2, refit=refit, layer=layer, batch_size=batch_size)
        self.l2, self.refit, self.layer, self.batch_size = float(l2), bool(refit), layer, batch_size

    def _from_model(self, model: Any, data: Any, *, task: Any, context: dict[str, Any]) -> tuple[Any, Any]:
        out = head_inputs(model, data, task=task, layer=self.layer, batch_size=self.batch_size)
        context.setdefault("logits", out["logits"])
        context.setdefault("head", out["weight"])
        if context.get("target") is not None:
            tgt = head_inputs(model, context["target"], task=task, layer=self.layer, batch_size=self.batch_size)
            context["target_features"] = tgt["embeddings"]
            if context.get("target_labels") is None:
                context["target_labels"] = tgt["labels"] if tgt["labels"] is not None else tgt["logits"].argmax(1)
        return out["embeddings"], out["labels"]

    def _select(self, x: np.ndarray, k: int, *, labels: np.ndarray | None) -> Selection:
        f = x.astype(np.float64)
        n = f.shape[0]
        y = as_labels(labels, n)
        meta: dict[str, Any] = {}
        head = self._context.get("head")
        if self.refit:
            n_classes = int(max(y.max() + 1, 2 if head is None else np.shape(head)[0]))
            if head is not None:
                head = as_array(head, name="head")
                if head.shape != (n_classes, f.shape[1]):
                    raise InvalidInputError(f"head must have shape ({n_classes}, {f.shape[1]}), got {head.shape}")
            w, stationarity = fit_l2_head(f, y, n_classes, l2=self.l2, init=head)
            logits = f @ w.T
            meta.update(head=w, stationarity=stationarity)
        else:
            logits = as_array(self._context.get("logits"), name="logits (required with refit=False)")
            if logits.shape[0] != n or y.max() >= logits.shape[1]:
                raise InvalidInputError(f"logits must have shape ({n}, C > max label), got {logits.shape}")
        alpha = representer_alphas(logits, y, l2=self.l2)
        meta["alphas"] = alpha
        tf = self._context.get("target_features")
        if tf is None:
            scores = np.abs(alpha[np.arange(n), y])
        else:
            tf = as_array(tf, name="target_features")
            if tf.shape[1] != f.shape[1]:
                raise InvalidInputError(f"target_features have {tf.shape[1]} columns, the features have {f.shape[1]}")
            tl = self._context.get("target_labels")
            c_t = (tf @ (alpha.T @ f).T).argmax(axis=1) if tl is None else as_labels(tl, tf.shape[0], what="target_labels")
            scores = np.mean(alpha[:, c_t] * (f @ tf.T), axis=1)
        return score_selection(scores, k, metadata=meta)
