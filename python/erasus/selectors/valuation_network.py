"""A learned data-value estimator in the spirit of DVRL (Yoon, Arik & Pfister, "Data Valuation using Reinforcement
Learning", ICML 2020): a small network trained with REINFORCE to keep the samples that help a predictor on
validation data."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InvalidInputError
from ..registry import register_selector
from ..selection import Selection
from ._common import ContextSelector, as_array, as_labels, head_inputs, score_selection

__all__ = ["ValuationNetworkSelector", "dvrl_values"]


def _ridge(x1: Any, targets: Any, sample_weights: Any, mu: float) -> Any:
    """Weighted ridge regression ``argmin_W sum_i s_i ||x_i W - t_i||^2 + mu ||W||^2`` (closed form, torch).

    Primal ``(X^T S X + mu I)^{-1} X^T S T`` (a ``d x d`` system) when the batch has more rows than columns,
    else the dual ``X^T (S X X^T + mu I)^{-1} S T`` (push-through identity, an ``n x n`` system): the same
    solution, without a ``d x d`` matrix for wide features (10^6 columns would need 8 TB).
    """
    import torch

    n, d = x1.shape
    xs = x1 * sample_weights[:, None]
    if n >= d:
        a = x1.T @ xs + mu * torch.eye(d, dtype=x1.dtype)
        return torch.linalg.solve(a, xs.T @ targets)
    k = sample_weights[:, None] * (x1 @ x1.T) + mu * torch.eye(n, dtype=x1.dtype)
    return x1.T @ torch.linalg.solve(k, sample_weights[:, None] * targets)


def dvrl_values(x: np.ndarray, y: np.ndarray, x_val: np.ndarray, y_val: np.ndarray, *, iterations: int = 300,
                batch_size: int = 256, hidden: int = 32, lr: float = 0.01, window: int = 20, threshold: float = 0.9,
                penalty: float = 1e3, mu: float = 1e-2, seed: int = 0, progress: bool = False) -> tuple[np.ndarray, list[float]]:
    """DVRL (Yoon et al. 2020, Alg. 1) with a closed-form weighted ridge classifier as the predictor.

    Estimator ``h_phi(x, y, |y - f_val(x)|) = p`` (an MLP; ``f_val`` is the predictor fit on validation
    data, DVRL's marginal signal). Each iteration samples a batch, draws ``s ~ Bernoulli(p)``, fits the
    predictor on the batch weighted by ``s`` and takes the reward ``R = -MSE_val - delta`` (``delta`` a moving
    average of past performances over ``window`` steps). REINFORCE ascends ``R * sum_i log pi(s_i | p_i)``;
    ``penalty * (max(mean p - threshold, 0) + max(1 - threshold - mean p, 0))`` keeps the selection probability
    away from all-or-nothing. Returns the final ``p`` of every sample (its data value) and the rewards.
    """
    import torch
    from tqdm.auto import tqdm

    g = torch.Generator().manual_seed(int(seed))
    with torch.random.fork_rng(devices=[]):  # the network's init is seeded without touching the caller's RNG
        torch.manual_seed(int(seed))
        c = int(max(y.max(), y_val.max()) + 1)
        xt = torch.as_tensor(x, dtype=torch.float64)
        x1 = torch.cat([xt, torch.ones(len(xt), 1, dtype=torch.float64)], 1)
        xv1 = torch.cat([torch.as_tensor(x_val, dtype=torch.float64), torch.ones(len(x_val), 1, dtype=torch.float64)], 1)
        yt = torch.nn.functional.one_hot(torch.as_tensor(y), c).double()
        yv = torch.nn.functional.one_hot(torch.as_tensor(y_val), c).double()
        w_val = _ridge(xv1, yv, torch.ones(len(xv1), dtype=torch.float64), mu)
        inputs = torch.cat([xt, yt, (yt - x1 @ w_val).abs()], 1).float()
        inputs = (inputs - inputs.mean(0)) / inputs.std(0).clamp_min(1e-6)
        net = torch.nn.Sequential(torch.nn.Linear(inputs.shape[1], hidden), torch.nn.ReLU(),
                                  torch.nn.Linear(hidden, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1))
        opt = torch.optim.Adam(net.parameters(), lr=lr)
        n, bs = len(xt), min(int(batch_size), len(xt))
        baseline, rewards = None, []
        for _ in tqdm(range(iterations), desc="DVRL", disable=not progress, leave=False):
            idx = torch.randperm(n, generator=g)[:bs]
            p = torch.sigmoid(net(inputs[idx])[:, 0]).clamp(1e-6, 1 - 1e-6)
            s = torch.bernoulli(p.detach().double(), generator=g)
            if s.sum() == 0:
                continue
            w = _ridge(x1[idx], yt[idx], s, mu)
            perf = -float(((xv1 @ w - yv) ** 2).sum(1).mean())
            baseline = perf if baseline is None else baseline
            reward = perf - baseline
            log_pi = (s.float() * torch.log(p) + (1 - s.float()) * torch.log(1 - p)).sum()
            mean_p = p.mean()
            loss = -reward * log_pi + penalty * (torch.relu(mean_p - threshold) + torch.relu(1 - threshold - mean_p))
            opt.zero_grad()
            loss.backward()
            opt.step()
            baseline = (1 - 1 / window) * baseline + perf / window
            rewards.append(reward)
        with torch.no_grad():
            values = torch.sigmoid(net(inputs)[:, 0]).double().numpy()
    return values, rewards


@register_selector("valuation_network")
class ValuationNetworkSelector(ContextSelector):
    """Valuation network (DVRL, Yoon et al., ICML 2020): keep the samples a REINFORCE-trained estimator values most.

    The estimator ``h_phi`` maps ``(x_i, y_i, |y_i - f_val(x_i)|)`` to a selection probability; it is trained
    to maximise ``E_{s ~ Bernoulli(h_phi)}[perf_val(f_s)] - delta`` by REINFORCE, where ``f_s`` is the predictor
    fit on the sampled subset (here a closed-form weighted ridge classifier on the features, to stay small)
    and ``perf_val`` its negative validation MSE on one-hot targets. The value of a sample is ``h_phi``'s output.
    ``features`` are representations ``(n, d)`` with ``labels``; per call ``val_features=``/``val_labels=`` (a
    clean validation set, as DVRL assumes) or, without them, a seeded ``val_fraction`` of the samples. With
    ``model=``/``data=`` (and ``val_data=``) the representations are the last linear layer's inputs.
    """

    call_inputs = ("val_features", "val_labels", "val_data")

    def __init__(self, *, seed: int = 0, iterations: int = 300, batch_size: int = 256, hidden: int = 32,
                 lr: float = 0.01, window: int = 20, threshold: float = 0.9, val_fraction: float = 0.2,
                 layer: str | None = None, progress: bool = False) -> None:
        if int(iterations) < 1 or int(hidden) < 1 or int(batch_size) < 2 or lr <= 0 or int(window) < 1:
            raise InvalidInputError("need iterations >= 1, hidden >= 1, batch_size >= 2, lr > 0 and window >= 1")
        if not 0.5 < threshold < 1.0 or not 0.0 < val_fraction < 1.0:
            raise InvalidInputError(f"need 0.5 < threshold < 1 and 0 < val_fraction < 1, got {threshold}, {val_fraction}")
        super().__init__(seed=seed, iterations=iterations, batch_size=batch_size, hidden=hidden, lr=lr,
                         window=window, threshold=threshold, val_fraction=val_fraction, layer=layer)
        self.iterations, self.batch_size, self.hidden, self.lr = int(iterations), int(batch_size), int(hidden), float(lr)
        self.window, self.threshold, self.val_fraction = int(window), float(threshold), float(val_fraction)
        self.layer, self.progress = layer, progress

    def _from_model(self, model: Any, data: Any, *, task: Any, context: dict[str, Any]) -> tuple[Any, Any]:
        out = head_inputs(model, data, task=task, layer=self.layer)
        if context.get("val_data") is not None:
            val = head_inputs(model, context["val_data"], task=task, layer=self.layer)
            context["val_features"], context["val_labels"] = val["embeddings"], val["labels"]
        return out["embeddings"], out["labels"]

    def _select(self, x: np.ndarray, k: int, *, labels: np.ndarray | None) -> Selection:
        xd = x.astype(np.float64)
        y = as_labels(labels, len(xd))
        if self._context.get("val_features") is not None:
            xv = as_array(self._context["val_features"], name="val_features")
            if xv.shape[1] != xd.shape[1]:
                raise InvalidInputError(f"val_features have {xv.shape[1]} columns, the features have {xd.shape[1]}")
            yv = as_labels(self._context.get("val_labels"), len(xv), what="val_labels")
            source = "val_features"
        else:
            m = round(self.val_fraction * len(xd))
            if m < 1 or m >= len(xd):
                raise InvalidInputError(f"cannot hold out a validation fraction {self.val_fraction} of {len(xd)} samples; "
                                        "pass val_features= and val_labels=")
            held = np.random.default_rng(self.seed).permutation(len(xd))[:m]
            xv, yv, source = xd[held], y[held], f"held-out {m} samples"
        values, rewards = dvrl_values(xd, y, xv, yv, iterations=self.iterations, batch_size=self.batch_size,
                                      hidden=self.hidden, lr=self.lr, window=self.window, threshold=self.threshold,
                                      seed=self.seed, progress=self.progress)
        return score_selection(values, k, metadata={"validation": source, "rewards": np.asarray(rewards)})
