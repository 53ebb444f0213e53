"""GLISTER (Killamsetty, Sivasubramanian, Ramakrishnan & Iyer, "GLISTER: Generalization based Data Subset Selection
for Efficient and Robust Learning", AAAI 2021), GLISTER-ONLINE's greedy step on the last layer."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InvalidInputError
from ..registry import register_selector
from ..selection import Selection
from ._common import ContextSelector, as_array, as_labels, head_inputs, plain
from .el2n import softmax

__all__ = ["GlisterSelector", "glister_greedy"]


def glister_greedy(f: np.ndarray, y: np.ndarray, f_val: np.ndarray, y_val: np.ndarray, theta: np.ndarray, k: int, *,
                   eta: float, progress: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Greedy GLISTER with the Taylor approximation on a softmax-linear last layer ``theta`` (C, d).

    ``gain(e | theta_S) = eta * grad l_e(theta_0) . grad L_val(theta_S)``, the first-order decrease of the
    validation loss from one SGD step on ``e``; after each pick ``theta_S <- theta_S - eta grad l_e(theta_0)``
    and ``grad L_val`` is recomputed exactly at the new parameters. Returns ``(order, gains, val losses)``.
    """
    from tqdm.auto import tqdm

    n, c = f.shape[0], theta.shape[0]
    err = softmax(f @ theta.T) - np.eye(c)[y]  # per-sample gradient g_i = err_i f_i^T
    onehot_val = np.eye(c)[y_val]
    available = np.ones(n, dtype=bool)
    order, gains, losses = np.empty(k, dtype=np.int64), np.empty(k), np.empty(k + 1)
    theta = theta.copy()
    for step in tqdm(range(k + 1), desc="GLISTER", disable=not progress, leave=False):
        p_val = softmax(f_val @ theta.T)
        losses[step] = -np.mean(np.log(np.clip(p_val[np.arange(len(y_val)), y_val], 1e-300, None)))
        if step == k:
            break
        grad_val = (p_val - onehot_val).T @ f_val / len(y_val)
        g = eta * np.einsum("ic,ic->i", err, f @ grad_val.T)
        g[~available] = -np.inf
        e = int(np.argmax(g))
        order[step], gains[step] = e, g[e]
        available[e] = False
        theta -= eta * np.outer(err[e], f[e])
    return order, gains, losses


@register_selector("glister")
class GlisterSelector(ContextSelector):
    """GLISTER (Killamsetty et al., AAAI 2021): greedy ``argmax_{S, |S| <= k} LL_val(theta - eta grad L_S(theta))``.

    The paper's GLISTER-ONLINE step: the validation log-likelihood after a gradient step on ``S`` is maximised
    greedily with its Taylor approximation, ``gain(e) = eta grad l_e . grad L_val(theta_S)``, updating
    ``theta_S`` and the validation gradient after every pick, all on the last (softmax-linear) layer.
    ``features`` are that layer's inputs ``(n, d)`` with ``labels``; per call ``val_features=``/``val_labels=``
    (default: the training set itself, as the paper does without a validation set) and ``head=`` the layer's
    weights ``(C, d)`` or ``(W, b)`` (default zeros, i.e. the start of training). With ``model=``/``data=``
    (and ``val_data=``) they come from the model's last ``nn.Linear``. ``eta`` is the inner learning rate.
    """

    call_inputs = ("val_features", "val_labels", "val_data", "head")

    def __init__(self, *, seed: int = 0, eta: float = 0.1, layer: str | None = None, batch_size: int | None = None,
                 progress: bool = False) -> None:
        if eta <= 0:
            raise InvalidInputError(f"eta must be > 0, got {eta}")
        super().__init__(seed=seed, eta=eta, layer=layer, batch_size=batch_size)
        self.eta, self.layer, self.batch_size, self.progress = float(eta), layer, batch_size, progress

    def _from_model(self, model: Any, data: Any, *, task: Any, context: dict[str, Any]) -> tuple[Any, Any]:
        out = head_inputs(model, data, task=task, layer=self.layer, batch_size=self.batch_size)
        context.setdefault("head", (out["weight"], out["bias"]))
        if context.get("val_data") is not None:
            val = head_inputs(model, context["val_data"], task=task, layer=self.layer, batch_size=self.batch_size)
            context["val_features"], context["val_labels"] = val["embeddings"], val["labels"]
        return out["embeddings"], out["labels"]

    def _select(self, x: np.ndarray, k: int, *, labels: np.ndarray | None) -> Selection:
        f = x.astype(np.float64)
        y = as_labels(labels, f.shape[0])
        if self._context.get("val_features") is None:
            fv, yv = f, y
        else:
            fv = as_array(self._context["val_features"], name="val_features")
            if fv.shape[1] != f.shape[1]:
                raise InvalidInputError(f"val_features have {fv.shape[1]} columns, the features have {f.shape[1]}")
            yv = as_labels(self._context.get("val_labels"), fv.shape[0], what="val_labels")
        head = self._context.get("head")
        bias = None
        if isinstance(head, (tuple, list)):
            head, bias = head
        n_classes = int(max(y.max(), yv.max()) + 1) if head is None else int(np.shape(head)[0])
        w = np.zeros((n_classes, f.shape[1])) if head is None else as_array(head, name="head")
        if w.shape[1] != f.shape[1] or max(y.max(), yv.max()) >= w.shape[0]:
            raise InvalidInputError(f"head must have shape (C > max label, {f.shape[1]}), got {w.shape}")
        if bias is not None:  # the bias is the weight of a constant input 1
            f, fv = np.hstack([f, np.ones((len(f), 1))]), np.hstack([fv, np.ones((len(fv), 1))])
            w = np.hstack([w, as_array(bias, name="bias", ndim=1)[:, None]])
        order, gains, losses = glister_greedy(f, y, fv, yv, w, k, eta=self.eta, progress=self.progress)
        return Selection(order, np.ones(k, dtype=np.float32), gains=gains, objective=float(losses[-1]),
                         metadata=plain({"val_losses": losses}))
