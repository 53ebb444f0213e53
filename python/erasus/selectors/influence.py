"""Influence functions (Koh & Liang, "Understanding Black-box Predictions via Influence Functions", ICML 2017) with exact,
LiSSA (Agarwal, Bullins & Hazan, "Second-Order Stochastic Optimization for Machine Learning in Linear Time", JMLR 2017)
and Arnoldi (Schioppa et al., "Scaling Up Influence Functions", AAAI 2022) inverse-Hessian-vector products."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import numpy as np

from ..errors import InvalidInputError, MemoryBudgetError
from ..registry import register_selector
from ..selection import Selection
from ._common import (
    ContextSelector,
    as_array,
    exact_hessian,
    hvp_fn,
    mean_grad,
    per_sample_grads,
    score_selection,
    trainable_subset,
)

__all__ = ["InfluenceSelector", "arnoldi_eigen", "exact_inverse_hvp", "lissa_inverse_hvp", "lissa_scale"]

Approximation = Literal["exact", "lissa", "arnoldi"]
MatVec = Callable[[np.ndarray], np.ndarray]


def exact_inverse_hvp(hessian: np.ndarray, v: np.ndarray, *, damping: float) -> np.ndarray:
    """``(H + damping I)^{-1} v`` by a symmetric solve (``v`` is ``(p,)`` or ``(p, m)``)."""
    import scipy.linalg

    h = np.asarray(hessian, dtype=np.float64) + damping * np.eye(hessian.shape[0])
    try:
        return scipy.linalg.solve(h, v, assume_a="sym")
    except np.linalg.LinAlgError as exc:
        raise InvalidInputError(f"the damped Hessian is singular; increase damping (now {damping})") from exc


def lissa_inverse_hvp(hvp: Callable[[np.ndarray, int | None], np.ndarray], v: np.ndarray, *, damping: float, scale: float,
                      depth: int, repeats: int = 1, n_batches: int = 1, seed: int = 0, progress: bool = False,
                      tol: float | None = None) -> np.ndarray:
    """LiSSA (Agarwal et al. 2017, Alg. 1): ``(H + damping I)^{-1} v`` from the truncated Neumann series.

    ``h_0 = v;  h_j = v + (I - (H_j + damping I) / scale) h_{j-1}``, where ``H_j`` is the Hessian on a
    minibatch drawn at step ``j`` (``hvp(x, b)`` for batch ``b``, or the full data when ``n_batches == 1``);
    the estimate is ``h_depth / scale`` averaged over ``repeats`` independent recursions. ``scale`` must exceed
    the largest eigenvalue of ``H + damping I`` for the series to converge. Koh & Liang's ``damping`` ``d``
    corresponds to ``damping = d * scale`` here. ``tol``: stop a recursion early once the rest of the series,
    estimated from the geometric decay of the updates (``||dh_j|| r / (1 - r)``, ``r = ||dh_j|| / ||dh_{j-1}||``),
    is below ``tol * ||h||`` (exact Hessians only; minibatch noise never settles).

    Cost: ``repeats x depth`` Hessian-vector products per column of ``v`` (each about two backward passes
    over the Hessian's data), fewer with ``tol``.
    """
    from tqdm.auto import tqdm

    if scale <= 0 or depth < 1 or repeats < 1:
        raise InvalidInputError(f"LiSSA needs scale > 0, depth >= 1 and repeats >= 1; got {scale}, {depth}, {repeats}")
    rng = np.random.default_rng(seed)
    total = np.zeros_like(v, dtype=np.float64)
    cols = 1 if v.ndim == 1 else v.shape[1]
    steps = tqdm(total=repeats * depth, desc=f"LiSSA ({cols} vector{'s' if cols > 1 else ''}, <= {depth} steps)",
                 disable=not progress, leave=False)
    stop_early = tol is not None and n_batches == 1
    for _ in range(repeats):
        h = v.astype(np.float64).copy()
        previous = 0.0
        for _ in range(depth):
            b = int(rng.integers(n_batches)) if n_batches > 1 else None
            new = v + h - (hvp(h, b) + damping * h) / scale
            steps.update()
            if not np.isfinite(np.abs(new).max()) or np.abs(new).max() > 1e150:
                steps.close()
                raise InvalidInputError(f"LiSSA diverged: scale ({scale}) must exceed the largest Hessian eigenvalue")
            change = float(np.linalg.norm(new - h))
            h = new
            if stop_early and previous > 0:
                # the updates shrink geometrically (ratio r): what is left of the series is change * r / (1 - r)
                r = min(change / previous, 1.0 - 1e-12)
                if change * r / (1.0 - r) <= tol * float(np.linalg.norm(h)):  # type: ignore[operator]
                    break
            previous = change
        total += h / scale
    steps.close()
    return total / repeats


def lissa_scale(hvp: Callable[[np.ndarray, int | None], np.ndarray], dim: int, *, damping: float, seed: int = 0,
                iterations: int = 20) -> float:
    """A LiSSA ``scale`` above the largest |eigenvalue| of ``H + damping I``: 1.5 x a power-iteration estimate.

    Power iteration approaches the top eigenvalue from below, hence the margin; ``iterations`` HVPs.
    """
    rng = np.random.default_rng(seed)
    u = rng.standard_normal(dim)
    u /= np.linalg.norm(u)
    top = 0.0
    for _ in range(iterations):
        w = np.asarray(hvp(u, None), dtype=np.float64) + damping * u
        top = float(np.linalg.norm(w))
        if top == 0.0 or not np.isfinite(top):
            break
        u = w / top
    if not np.isfinite(top):
        raise InvalidInputError("the Hessian-vector products are not finite; check the model and data")
    return 1.5 * max(top, damping, 1e-12)


def arnoldi_eigen(hvp: MatVec, dim: int, *, iterations: int, rank: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Top-``rank`` eigenpairs of ``H`` from ``iterations`` Arnoldi steps (Schioppa et al. 2022, Alg. 1).

    Builds an orthonormal Krylov basis ``Q`` and the Hessenberg matrix ``A = Q^T H Q`` with modified
    Gram-Schmidt (full re-orthogonalisation), diagonalises ``A`` and keeps the ``rank`` eigenvalues of largest
    magnitude with their Ritz vectors ``Q u``. Returns ``(eigenvalues (r,), eigenvectors (dim, r))``.
    """
    if iterations < 1 or rank < 1:
        raise InvalidInputError(f"Arnoldi needs iterations >= 1 and rank >= 1, got {iterations} and {rank}")
    iterations = min(iterations, dim)
    rng = np.random.default_rng(seed)
    q = np.zeros((dim, iterations + 1))
    a = np.zeros((iterations + 1, iterations))
    start = rng.standard_normal(dim)
    q[:, 0] = start / np.linalg.norm(start)
    m = iterations
    for i in range(iterations):
        w = np.asarray(hvp(q[:, i]), dtype=np.float64)
        for _ in range(2):  # twice is enough for orthogonality in floating point ("twice is enough", Parlett)
            coef = q[:, :i + 1].T @ w
            a[:i + 1, i] += coef
            w = w - q[:, :i + 1] @ coef
        a[i + 1, i] = np.linalg.norm(w)
        if a[i + 1, i] < 1e-10 * max(1.0, np.abs(a[:i + 1, i]).max()):
            m = i + 1  # the Krylov space is invariant: its Ritz pairs are exact
            break
        q[:, i + 1] = w / a[i + 1, i]
    vals, vecs = np.linalg.eig(a[:m, :m])
    vals, vecs = vals.real, vecs.real
    keep = np.argsort(-np.abs(vals), kind="stable")[:rank]
    u = q[:, :m] @ vecs[:, keep]
    u /= np.linalg.norm(u, axis=0, keepdims=True)
    return vals[keep], u


@register_selector("influence")
class InfluenceSelector(ContextSelector):
    """Influence functions (Koh & Liang, ICML 2017): ``score_i = g_target^T (H + damping I)^{-1} g_i``; keeps the highest.

    ``g_i = grad_theta l(z_i)``, ``H`` the Hessian of the mean training loss and ``g_target`` the gradient of
    the mean loss on ``target`` data (``select(..., target=data)`` or ``target_features=`` gradients). Removing
    ``z_i`` changes the target loss by about ``score_i / n`` (``-I_up,loss / n``), so the kept samples are those
    the target fit relies on most. Without a target the score is the self-influence ``g_i^T H^{-1} g_i``.
    ``damping`` plays the role of an L2 penalty ``damping/2 ||theta||^2`` in the training objective.

    ``approximation``: ``"exact"`` (the Hessian is formed: small models or ``params="last_layer"``; at most
    ``max_params`` parameters), ``"lissa"`` (Agarwal et al. 2017: ``scale``, ``depth``, ``repeats``,
    ``lissa_batch_size`` for stochastic minibatch Hessians) or ``"arnoldi"`` (Schioppa et al. 2022:
    ``arnoldi_iterations`` Krylov steps, ``arnoldi_rank`` top eigenpairs; ``H^{-1} ~ U diag(1/(lambda+damping)) U^T``).

    LiSSA defaults come from the problem: ``scale=None`` is 1.5 x a 20-step power-iteration estimate of the
    top eigenvalue of ``H + damping I`` (the series converges only above it); ``depth=None`` is Koh & Liang's
    one pass over the Hessian data with minibatches (``depth x lissa_batch_size ~ n``, their
    ``recursion_depth``) and, with full-data Hessians, up to ``max_depth`` steps stopped once an update
    leaves less than ``tol`` (relative) of the series to sum (:func:`lissa_inverse_hvp`). Cost of a call: ``repeats x depth`` HVPs per
    inverse-HVP vector — one vector with a target, **one per sample without one** (self-influence), so
    without ``target=`` prefer ``"exact"`` on ``params="last_layer"`` or ``"arnoldi"`` (``arnoldi_iterations``
    HVPs in all). Reference code: Koh & Liang's ``kohpangwei/influence-release``,
    ``influence/genericNeuralNet.py`` (``get_inverse_hvp_lissa``, whose scale and recursion depth are fixed
    numbers tuned per experiment); erasus derives them from the problem instead.

    With ``model=``/``data=``, gradients and Hessian-vector products are exact (``torch.func``) over the
    ``params`` (``None``: all trainable; ``"last_layer"``; or a list of names); ``hessian_data=`` sets the
    data of ``H`` (default ``data``); the ``(n, p)`` gradient matrix is refused beyond ``max_grad_entries``.
    With ``features=`` (per-sample gradients ``(n, p)``) ``H`` is
    ``hessian=`` if given, else the Gauss-Newton / empirical-Fisher ``G^T G / n``.
    """

    call_inputs = ("target", "target_features", "hessian", "hessian_data")

    def __init__(self, *, seed: int = 0, approximation: Approximation = "exact", damping: float = 0.01,
                 scale: float | None = None, depth: int | None = None, repeats: int = 1,
                 lissa_batch_size: int | None = None, tol: float = 1e-4, max_depth: int = 10_000,
                 arnoldi_iterations: int = 100, arnoldi_rank: int = 20, params: Any = None,
                 batch_size: int | None = None, max_params: int = 10_000, max_grad_entries: int = 1 << 28,
                 progress: bool = True) -> None:
        if approximation not in ("exact", "lissa", "arnoldi"):
            raise InvalidInputError(f"approximation must be 'exact', 'lissa' or 'arnoldi', got {approximation!r}")
        if damping < 0:
            raise InvalidInputError(f"damping must be >= 0, got {damping}")
        if scale is not None and scale <= 0 or depth is not None and depth < 1 or tol <= 0 or max_depth < 1:
            raise InvalidInputError(f"need scale > 0, depth >= 1, tol > 0 and max_depth >= 1; got {scale}, {depth}, "
                                    f"{tol}, {max_depth}")
        super().__init__(seed=seed, approximation=approximation, damping=damping, scale=scale, depth=depth,
                         repeats=repeats, lissa_batch_size=lissa_batch_size, tol=tol, max_depth=max_depth,
                         arnoldi_iterations=arnoldi_iterations, arnoldi_rank=arnoldi_rank, params=params,
                         batch_size=batch_size, max_params=max_params, max_grad_entries=max_grad_entries)
        self.approximation, self.damping = approximation, float(damping)
        self.scale = None if scale is None else float(scale)
        self.depth = None if depth is None else int(depth)
        self.repeats, self.lissa_batch_size = int(repeats), lissa_batch_size
        self.tol, self.max_depth = float(tol), int(max_depth)
        self.arnoldi_iterations, self.arnoldi_rank = int(arnoldi_iterations), int(arnoldi_rank)
        self.params, self.batch_size, self.max_params, self.progress = params, batch_size, int(max_params), progress
        self.max_grad_entries = int(max_grad_entries)

    def _from_model(self, model: Any, data: Any, *, task: Any, context: dict[str, Any]) -> tuple[Any, Any]:
        from ..data import num_samples

        named = dict(model.named_parameters())
        p = sum(named[name].numel() for name in trainable_subset(model, self.params))
        n = num_samples(data)
        if self.approximation == "exact" and p > self.max_params:
            raise MemoryBudgetError(
                f"exact influence would form a {p} x {p} Hessian (max_params={self.max_params}); use "
                "params='last_layer', approximation='lissa' or 'arnoldi', or raise max_params")
        if n * p > self.max_grad_entries:
            raise MemoryBudgetError(
                f"{n} per-sample gradients of {p} parameters ({n * p} entries) exceed max_grad_entries="
                f"{self.max_grad_entries}; restrict params= (e.g. 'last_layer') or raise max_grad_entries")
        grads, labels = per_sample_grads(model, data, task=task, params=self.params, batch_size=self.batch_size)
        if context.get("target") is not None:
            context["target_gradient"] = mean_grad(model, context["target"], task=task, params=self.params,
                                                   batch_size=self.batch_size).double().numpy()
        hdata = context.get("hessian_data", data)
        if self.approximation == "exact":
            context["hessian"] = exact_hessian(model, hdata, task=task, params=self.params,
                                               batch_size=self.batch_size).double().numpy()
        else:
            import torch

            bs = self.lissa_batch_size if self.approximation == "lissa" else None
            hvp, _ = hvp_fn(model, hdata, task=task, params=self.params, batch_size=bs or self.batch_size)

            def matvec(v: np.ndarray, b: int | None = None) -> np.ndarray:
                if v.ndim == 1:
                    return hvp(torch.as_tensor(v), b).double().numpy()
                return np.stack([hvp(torch.as_tensor(c), b).double().numpy() for c in v.T], axis=1)

            context["hvp"] = matvec
            context["n_batches"] = hvp.n_batches if bs else 1  # 1: every step uses the full-data Hessian
        context["gradients"] = grads.double().numpy()
        return context["gradients"], labels

    def _hvp(self, g: np.ndarray) -> tuple[Callable[[np.ndarray, int | None], np.ndarray], int]:
        if "hvp" in self._context:
            return self._context["hvp"], int(self._context.get("n_batches", 1))
        h = self._context.get("hessian")
        if h is not None:
            return (lambda v, b=None: h @ v), 1
        n = g.shape[0]
        if self.approximation == "lissa" and self.lissa_batch_size:
            bs = int(self.lissa_batch_size)
            parts = [g[i:i + bs] for i in range(0, n, bs)]
            return (lambda v, b=None: g.T @ (g @ v) / n if b is None else parts[b].T @ (parts[b] @ v) / parts[b].shape[0]), len(parts)
        return (lambda v, b=None: g.T @ (g @ v) / n), 1

    def _select(self, x: np.ndarray, k: int, *, labels: np.ndarray | None) -> Selection:
        g = self._context.get("gradients", x).astype(np.float64)
        n, p = g.shape
        tg = self._context.get("target_gradient")
        if tg is None and self._context.get("target_features") is not None:
            tf = as_array(self._context["target_features"], name="target_features")
            if tf.shape[1] != p:
                raise InvalidInputError(f"target_features have {tf.shape[1]} columns, the gradients have {p}")
            tg = tf.mean(axis=0)
        if self._context.get("hessian") is not None:
            h = as_array(self._context["hessian"], name="hessian")
            if h.shape != (p, p):
                raise InvalidInputError(f"hessian must have shape ({p}, {p}), got {h.shape}")
            self._context["hessian"] = h
        rhs = g.T if tg is None else tg  # self-influence needs H^{-1} g_i for every i
        if self.approximation == "exact" and p > self.max_params:
            raise MemoryBudgetError(
                f"exact influence on {p}-column features would form a {p} x {p} Hessian ({p * p * 8 / 2**30:.3g} GiB; "
                f"max_params={self.max_params}); use approximation='lissa' or 'arnoldi', project the gradients "
                "(erasus.features.per_sample_gradients(proj_dim=...)) or raise max_params")
        if self.approximation == "exact":
            given = self._context.get("hessian")
            solved = exact_inverse_hvp(g.T @ g / n if given is None else given, rhs, damping=self.damping)
        elif self.approximation == "lissa":
            hvp, n_batches = self._hvp(g)
            scale = self.scale if self.scale is not None else lissa_scale(hvp, p, damping=self.damping, seed=self.seed)
            depth = self.depth
            if depth is None:  # Koh & Liang: one pass over the Hessian data; exact Hessians: until converged
                depth = n_batches if n_batches > 1 else self.max_depth
            solved = lissa_inverse_hvp(hvp, rhs, damping=self.damping, scale=scale, depth=depth, repeats=self.repeats,
                                       n_batches=n_batches, seed=self.seed, progress=self.progress,
                                       tol=self.tol if self.depth is None else None)
            self._context["lissa"] = {"scale": scale, "depth": depth}
        else:
            hvp, _ = self._hvp(g)
            vals, u = arnoldi_eigen(lambda v: hvp(v, None), p, iterations=self.arnoldi_iterations,
                                    rank=self.arnoldi_rank, seed=self.seed)
            d = vals + self.damping
            # away from a minimum H is indefinite; like the exact solve, invert any non-singular damped eigenvalue
            if np.any(np.abs(d) <= 1e-12 * max(1.0, float(np.abs(vals).max()))):
                raise InvalidInputError("the damped Hessian is singular on the Arnoldi subspace; change damping")
            coef = u.T @ rhs
            solved = u @ (coef / (d[:, None] if coef.ndim == 2 else d))
        scores = np.einsum("ip,pi->i", g, solved) if tg is None else g @ solved
        meta = {"approximation": self.approximation, "target": "self" if tg is None else "target"}
        if "lissa" in self._context:
            meta["lissa"] = self._context["lissa"]
        return score_selection(scores, k, metadata=meta)
