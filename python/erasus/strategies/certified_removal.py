"""Certified removal for an L2-regularised logistic head on frozen features (Guo et al., ICML 2020).

Reference code: facebookresearch/certified-removal, ``test_removal.py`` (one-vs-rest removal: the
data-dependent bound ``Delta.norm() * Delta_p.norm() * spec_norm / 4`` is *summed over the classes* into one
``grad_norm_approx`` per removal, and that sum is what the budget is compared with).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..data import as_loader
from ..errors import ErasusTypeError, InvalidInputError
from ..registry import register_strategy
from .base import Run, UnlearningStrategy

__all__ = ["CertifiedRemoval", "CertifiedLogistic", "CertifiedBudgetExceededError", "residual_norm"]

GAMMA_LOGISTIC = 0.25  # Guo et al.: l'' of the logistic loss is gamma-Lipschitz with gamma = 1/4


class CertifiedBudgetExceededError(InvalidInputError):
    """A removal would push the cumulative gradient-residual norm past what the noise certifies."""


class CertifiedLogistic(torch.nn.Module):
    """One-vs-rest L2-regularised logistic regression on (frozen) features, trained with objective perturbation.

    ``forward(x)`` returns float32 logits ``(B, C)`` (``phi(x) W^T`` with a bias column); ``phi`` is
    ``backbone`` (frozen, eval mode) or the flattened input. Holds the certification state: ``lam``, the
    training-set size, the joint gradient-residual norm spent so far (over all classes) and the removals
    served (both buffers, so they are saved with the weights), and the perturbation ``b``.

    ``b`` (``noise``) is the secret the ``(epsilon, delta)`` claim rests on: it is a plain attribute, not a
    buffer, so it is in neither ``state_dict()`` nor the files :meth:`erasus.ErasusUnlearner.save` writes.
    Keep it in memory (or in your own secret store) to verify or remove again later.
    """

    weight: torch.Tensor
    residual_spent: torch.Tensor
    removals_served: torch.Tensor

    def __init__(
        self,
        weight: torch.Tensor,
        noise: torch.Tensor,
        *,
        lam: float,
        n_train: int,
        budget: float,
        epsilon: float,
        delta: float,
        sigma: float,
        backbone: torch.nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        if backbone is not None:
            backbone.eval()
            for p in backbone.parameters():
                p.requires_grad_(False)
        self.register_buffer("weight", weight.to(torch.float64))
        self.register_buffer("residual_spent", torch.zeros((), dtype=torch.float64))
        self.register_buffer("removals_served", torch.zeros((), dtype=torch.int64))
        self.noise: torch.Tensor | None = noise.to(torch.float64)
        self.lam, self.n_train, self.budget = float(lam), int(n_train), float(budget)
        self.epsilon, self.delta, self.sigma = float(epsilon), float(delta), float(sigma)
        self.certificate: Any = None

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``[phi(x), 1]`` in float64."""
        if self.backbone is not None:
            with torch.no_grad():
                x = self.backbone(x)
        f = x.reshape(x.shape[0], -1).to(torch.float64)
        return torch.cat([f, torch.ones(f.shape[0], 1, dtype=f.dtype, device=f.device)], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.features(x) @ self.weight.T).to(torch.float32)


def _signs(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """One-vs-rest targets ``s_ic = +1 if y_i == c else -1``, shape (n, C)."""
    return 2.0 * torch.nn.functional.one_hot(y, num_classes).to(torch.float64) - 1.0


def objective_grad(w: torch.Tensor, x: torch.Tensor, s: torch.Tensor, lam: float, n: int, b: torch.Tensor) -> torch.Tensor:
    """Per class ``c``: ``grad_w [sum_i log(1 + exp(-s_ic w_c^T x_i)) + lam n / 2 ||w_c||^2 + b_c^T w_c]``."""
    z = x @ w.T  # (n, C)
    coef = -s * torch.sigmoid(-s * z)
    return coef.T @ x + lam * n * w + b


def objective_hessian(w: torch.Tensor, x: torch.Tensor, lam: float, n: int) -> torch.Tensor:
    """Per-class Hessians ``X^T diag(sigma(z)(1 - sigma(z))) X + lam n I``, shape (C, d, d)."""
    z = x @ w.T
    d2 = torch.sigmoid(z) * torch.sigmoid(-z)  # (n, C)
    h = torch.einsum("nc,ni,nj->cij", d2, x, x)
    return h + lam * n * torch.eye(x.shape[1], dtype=x.dtype, device=x.device)


def _collect(model: CertifiedLogistic, run_batches) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    feats, labels, weights = [], [], []
    for batch, w in run_batches:
        if not isinstance(batch, (tuple, list)) or len(batch) != 2:
            raise ErasusTypeError("certified_removal needs (x, y) batches")
        feats.append(model.features(batch[0]))
        labels.append(torch.as_tensor(batch[1]).long().reshape(-1).to(feats[-1].device))
        weights.append(w)
    w_all = None if any(w is None for w in weights) else torch.cat(weights).to(torch.float64)
    return torch.cat(feats), torch.cat(labels), w_all


@register_strategy("certified_removal")
class CertifiedRemoval(UnlearningStrategy):
    """Certified data removal (Guo, Goldstein, Hannun & van der Maaten, ICML 2020).

    :meth:`fit` trains ``L(w; D) = sum_i l(w^T x_i, y_i) + lam n / 2 ||w||^2 + b^T w`` (logistic loss,
    one-vs-rest over classes, exact Newton solve in float64) with objective perturbation ``b ~ N(0, sigma^2 I)``
    (``noise="gaussian"``: ``(epsilon, delta)``-certified) or ``p(b) ∝ exp(-||b|| / sigma)`` (``noise="laplace"``:
    ``epsilon``-certified). :meth:`unlearn` removes the forget set ``D_f`` (``m`` samples) with one Newton step

        ``Delta = m lam w* + sum_{j in D_f} w_j grad l(w*^T x_j, y_j)``,  ``H = grad^2 L(w*; D')``,
        ``w^- = w* + H^{-1} Delta``

    and the data-dependent gradient-residual bound ``beta = gamma ||X'||_2 ||H^{-1} Delta||_2 ||X' H^{-1} Delta||_2``
    (Corollary 1, ``gamma = 1/4``), one per class ``c`` of the one-vs-rest model. The Gaussian (or Laplace)
    mechanism perturbs all ``C x d`` parameters at once, so the budget is charged with the **joint** residual:
    as in the reference code, ``beta = sum_c beta_c`` (an upper bound on the norm of the concatenated residual
    ``sqrt(sum_c ||r_c||^2)``). With non-uniform ``weights`` the exact joint residual ``||grad L(w^-; D')||_F``
    is used instead. Removals are refused with :class:`CertifiedBudgetExceededError` once the cumulative
    ``beta`` would exceed ``sigma * epsilon / c`` with ``c = sqrt(2 log(1.5 / delta))`` (Gaussian) or
    ``sigma * epsilon`` (Laplace): retrain then. The retain set ``D'`` is needed for the Hessian.
    ``info_`` reports the request's residual, the cumulative residual and the budget left.

    Every :meth:`fit` and :meth:`unlearn` issues a :class:`erasus.certification.Certificate`
    (``strategy.certificate_`` and ``head.certificate``) for the returned head and the data it now
    represents; :func:`erasus.certification.verify_certified_removal` re-checks it.

    The perturbation ``b`` is drawn from OS entropy unless ``fit(seed=...)`` is given: a seeded ``b`` is
    reproducible, hence predictable, and the certificate says so. ``b`` is never saved (see
    :class:`CertifiedLogistic`). Defaults: ``lam = 1e-3``, ``epsilon = 1``, ``delta = 1e-4``, ``sigma = 1``.
    """

    data_parallel = False

    defaults = {"lam": 1e-3, "epsilon": 1.0, "delta": 1e-4, "sigma": 1.0, "noise": "gaussian", "newton_iters": 50}
    retain = "required"
    gradient_based = False

    def fit(
        self,
        data: Any,
        *,
        backbone: torch.nn.Module | None = None,
        num_classes: int | None = None,
        seed: int | None = None,
    ) -> CertifiedLogistic:
        """Train the certified head on ``data`` (``(x, y)`` pairs; ``x`` goes through the frozen ``backbone``).

        ``seed``: seeds the perturbation ``b`` (tests, reproductions). Without it ``b`` comes from OS entropy,
        which is what the privacy claim assumes: two calls draw different noise.
        """
        o = self.options
        lam, eps, delta, sigma, noise = o["lam"], o["epsilon"], o["delta"], o["sigma"], o["noise"]
        if lam <= 0 or eps <= 0 or sigma <= 0:
            raise InvalidInputError(f"lam, epsilon and sigma must be positive, got {lam}, {eps}, {sigma}")
        if noise == "gaussian":
            if not 0 < delta < 1:
                raise InvalidInputError(f"delta must be in (0, 1) for Gaussian noise, got {delta}")
            budget = sigma * eps / math.sqrt(2 * math.log(1.5 / delta))
        elif noise == "laplace":
            budget = sigma * eps
        else:
            raise InvalidInputError(f"noise must be 'gaussian' or 'laplace', got {noise!r}")
        from ..certification.noise import privacy_generator

        g = privacy_generator(seed)  # validates seed before any work
        probe = CertifiedLogistic(torch.zeros(1, 1), torch.zeros(1, 1), lam=lam, n_train=0, budget=0, epsilon=eps,
                                  delta=delta, sigma=sigma, backbone=backbone)
        x, y, _ = _collect(probe, ((tuple(b), None) for b in as_loader(data, batch_size=1024)))
        c = int(num_classes or int(y.max()) + 1)
        n, d = x.shape
        if noise == "gaussian":
            b = torch.randn((c, d), generator=g, dtype=torch.float64) * sigma
        else:
            # p(b) ∝ exp(-||b|| / sigma) over the whole (C, d) vector, which the joint budget protects: a uniform
            # direction times a Gamma(C d, sigma) radius, drawn as a sum of C d exponentials from the same generator
            direction = torch.randn((c, d), generator=g, dtype=torch.float64)
            direction /= direction.norm()
            radius = -torch.log1p(-torch.rand(c * d, generator=g, dtype=torch.float64)).sum() * sigma
            b = direction * radius
        w = _newton(torch.zeros((c, d), dtype=torch.float64), x, _signs(y, c), lam, n, b, o["newton_iters"])
        head = CertifiedLogistic(w, b, lam=lam, n_train=n, budget=budget, epsilon=eps, delta=delta, sigma=sigma,
                                 backbone=backbone)
        residual = float(objective_grad(w, x, _signs(y, c), lam, n, b).norm())
        with torch.no_grad():
            head.residual_spent.fill_(residual)  # the solver's own residual: charged, however small
        self._issue(head, data, seeded=seed is not None)
        return head

    def _issue(self, head: CertifiedLogistic, data: Any, *, seeded: bool) -> None:
        from ..certification import Certificate, hash_data, hash_model

        noise = self.options["noise"]
        spent = float(head.residual_spent)
        cert = Certificate(
            mechanism=f"guo2020_newton_{noise}",
            epsilon=head.epsilon,
            delta=head.delta if noise == "gaussian" else 0.0,
            bound_name="gradient_residual_norm",
            bound_value=spent,
            budget=head.budget,
            removals=int(head.removals_served),
            model_hash=hash_model(head),
            data_hash=hash_data(data),
            statement=(
                f"Guo et al. 2020 certified removal ({noise} objective perturbation, sigma={head.sigma:g}): the "
                f"head is ({head.epsilon:g}, {head.delta if noise == 'gaussian' else 0:g})-indistinguishable from "
                "one trained on this data alone while the joint gradient-residual norm stays within the budget"
                + ("; the perturbation was drawn from an explicit seed, so it is reproducible and the claim "
                   "holds only against someone who does not know that seed" if seeded else "")
            ),
            parameters={"lam": head.lam, "sigma": head.sigma, "noise": noise, "n_train": head.n_train,
                        "num_classes": int(head.weight.shape[0]), "seeded_noise": seeded},
        )
        head.certificate = cert
        self.certificate_ = cert

    def _unlearn(self, model: torch.nn.Module, run: Run, **options: Any) -> torch.nn.Module:
        # lam/epsilon/delta/sigma were fixed at fit() time and live on the head: options only configure fit()
        if not isinstance(model, CertifiedLogistic):
            raise ErasusTypeError(
                "certified_removal works on a CertifiedLogistic head trained by CertifiedRemoval().fit(...); "
                f"got {type(model).__name__}"
            )
        xf, yf, wf = _collect(model, run.forget_epoch(shuffle=False))
        xr, yr, _unweighted = _collect(model, ((b, None) for b in run.retain_epoch(shuffle=False)))
        c = int(model.weight.shape[0])
        n_new = xr.shape[0]
        if run.weights is None and model.n_train - xf.shape[0] != n_new:
            raise InvalidInputError(
                f"the head was trained on {model.n_train} samples; removing {xf.shape[0]} should leave "
                f"{model.n_train - xf.shape[0]}, but the retain set has {n_new}"
            )
        w = model.weight
        wts = torch.ones(xf.shape[0], dtype=torch.float64) if wf is None else wf
        m = float(wts.sum())
        sf = _signs(yf, c)
        coef = -sf * torch.sigmoid(-sf * (xf @ w.T))  # (m, C): dl/dz per sample and class
        delta = (coef * wts[:, None]).T @ xf + m * model.lam * w  # (C, d)
        hess = objective_hessian(w, xr, model.lam, n_new)
        step = torch.linalg.solve(hess, delta.unsqueeze(-1)).squeeze(-1)  # H^{-1} Delta per class
        w_new = w + step
        x_norm = torch.linalg.matrix_norm(xr, ord=2)
        bound_per_class = GAMMA_LOGISTIC * x_norm * step.norm(dim=1) * (xr @ step.T).norm(dim=0)
        bound = float(bound_per_class.sum())
        exact = float(residual_norm(model, xr, yr, weight=w_new)) if model.noise is not None else None
        if run.weights is None:
            request = bound
        elif exact is None:
            raise InvalidInputError(
                "a weighted removal is charged its exact gradient residual, which needs the head's secret "
                "perturbation b; this head has none (it was loaded from disk): set head.noise from your secret store"
            )
        else:
            request = exact
        total = float(model.residual_spent) + request
        self.info_.update(
            residual_bound_per_class=bound_per_class.tolist(),
            residual_bound=bound,
            residual_exact=exact,
            residual_request=request,
            residual_spent=total,
            budget=model.budget,
            budget_left=model.budget - total,
        )
        if total > model.budget:
            raise CertifiedBudgetExceededError(
                f"removing these {xf.shape[0]} samples would bring the cumulative joint gradient-residual norm to "
                f"{total:.4g}, above the certified budget {model.budget:.4g} (epsilon={model.epsilon}, "
                f"delta={model.delta}, sigma={model.sigma}); retrain the head on the retain set instead"
            )
        with torch.no_grad():
            model.weight.copy_(w_new)
            model.residual_spent.fill_(total)
            model.removals_served.add_(int(xf.shape[0]))
        model.n_train = n_new
        seeded = model.certificate is not None and bool(model.certificate.parameters.get("seeded_noise"))
        self._issue(model, run.retain_raw, seeded=seeded)
        return model


def residual_norm(head: CertifiedLogistic, x: torch.Tensor, y: torch.Tensor, *,
                  weight: torch.Tensor | None = None) -> torch.Tensor:
    """``||grad L_b(w; D)||_F`` at ``weight`` (default the head's): the joint residual over every class.

    ``x`` are the head's features (:meth:`CertifiedLogistic.features`), ``y`` the labels.
    """
    if head.noise is None:
        raise InvalidInputError("the residual of the perturbed objective needs the head's secret perturbation b")
    c = int(head.weight.shape[0])
    w = head.weight if weight is None else weight
    return objective_grad(w, x, _signs(y, c), head.lam, x.shape[0], head.noise.to(w.device)).norm()


def objective_value(w: torch.Tensor, x: torch.Tensor, s: torch.Tensor, lam: float, n: int, b: torch.Tensor) -> torch.Tensor:
    """Per-class perturbed objective ``sum_i log(1 + exp(-s_ic w_c^T x_i)) + lam n / 2 ||w_c||^2 + b_c^T w_c``."""
    z = x @ w.T
    return torch.nn.functional.softplus(-s * z).sum(0) + 0.5 * lam * n * (w * w).sum(1) + (b * w).sum(1)


def _newton(w: torch.Tensor, x: torch.Tensor, s: torch.Tensor, lam: float, n: int, b: torch.Tensor, iters: int) -> torch.Tensor:
    """Minimise the perturbed objective per class by Newton steps with backtracking (strongly convex)."""
    for _ in range(iters):
        g = objective_grad(w, x, s, lam, n, b)
        if float(g.norm(dim=1).max()) < 1e-12 * max(1.0, n):
            break
        direction = torch.linalg.solve(objective_hessian(w, x, lam, n), g.unsqueeze(-1)).squeeze(-1)
        f0 = objective_value(w, x, s, lam, n, b)
        t = torch.ones(w.shape[0], 1, dtype=w.dtype)
        for _ in range(30):
            candidate = w - t * direction
            ok = objective_value(candidate, x, s, lam, n, b) <= f0 - 0.25 * t.squeeze(1) * (g * direction).sum(1)
            if bool(ok.all()):
                break
            t = torch.where(ok[:, None], t, t * 0.5)
        w = w - t * direction
    return w
