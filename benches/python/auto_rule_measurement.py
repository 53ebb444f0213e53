"""The measurement behind the ``"auto"`` selector's rule: which coreset of a forget set unlearns like the whole set?

Setup (CPU, ~2 minutes): scikit-learn digits, an MLP 64-32-10 trained to ~97 % test accuracy, forget sets of
300 random training samples (3 seeds). Each selector picks a coreset at ratio r in {0.05, 0.1, 0.2}; gradient
ascent (the simplest unlearning strategy, 10 SGD steps, lr 0.02, weighted mean loss as in ``Task.loss``) then runs on the weighted coreset and, as the
reference, on the full forget set. Reported per selector and ratio:

* ``gap``: |L_F(coreset GA) - L_F(full GA)| / |L_F(full GA) - L_F(before)|: how far the forget-set loss after
  unlearning on the coreset is from unlearning on everything (0 = identical effect), mean over seeds;
* ``cos``: cosine between the coreset's weighted mean loss gradient and the forget set's mean gradient at the
  start (the first unlearning step's direction), mean over seeds;
* ``sec``: selection time including its features (embeddings: one forward pass; gradients: projected per-sample
  gradients, proj_dim 256; logits; second-order / valuation methods their own costs).

Run: ``python benches/python/auto_rule_measurement.py`` (prints a markdown table; the numbers quoted in
``erasus/selectors/auto.py`` come from this script).
"""

from __future__ import annotations

import copy
import time

import erasus
import numpy as np
import torch
from erasus import features as F
from sklearn.datasets import load_digits
from sklearn.preprocessing import StandardScaler

torch.set_num_threads(1)
RATIOS = (0.05, 0.1, 0.2)
SEEDS = (0, 1, 2)
STEPS, LR = 10, 0.02


def train_model(x: torch.Tensor, y: torch.Tensor) -> torch.nn.Module:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(300):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model


def ascend(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> torch.nn.Module:
    m = copy.deepcopy(model)
    opt = torch.optim.SGD(m.parameters(), lr=LR)
    for _ in range(STEPS):
        opt.zero_grad()
        loss = (torch.nn.functional.cross_entropy(m(x), y, reduction="none") * w).sum() / w.sum()
        (-loss).backward()
        opt.step()
    return m


def mean_grad(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    model.zero_grad()
    ((torch.nn.functional.cross_entropy(model(x), y, reduction="none") * w).sum() / w.sum()).backward()
    g = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
    model.zero_grad()
    return g


def forget_loss(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float(torch.nn.functional.cross_entropy(model(x), y))


def candidates() -> dict[str, tuple[str, dict]]:
    """name -> (feature kind, selector options)."""
    c = {
        "random": ("embeddings", {}),
        "kcenter": ("embeddings", {}),
        "herding": ("embeddings", {}),
        "kmeans": ("embeddings", {}),
        "moderate": ("embeddings", {}),
        "upcore": ("embeddings", {}),
        "data_shapley": ("embeddings", {}),
        "el2n": ("logits", {}),
        "uncertainty": ("logits", {}),
        "grand": ("gradients", {}),
        "gradmatch": ("gradients", {}),
        "tracin": ("gradients", {}),
        "influence": ("gradients", {"damping": 0.01}),
        "glister": ("model", {}),
        "representer": ("model", {}),
        "valuation_network": ("embeddings", {"iterations": 100}),
    }
    for name in ("facility_location", "craig", "submodular"):
        if name in erasus.list_selectors():
            c[name] = ("embeddings", {})
    return c


def main() -> None:
    digits = load_digits()
    x_all = torch.tensor(StandardScaler().fit_transform(digits.data), dtype=torch.float32)
    y_all = torch.tensor(digits.target)
    perm = torch.randperm(len(x_all), generator=torch.Generator().manual_seed(0))
    tr, te = perm[:1400], perm[1400:]
    model = train_model(x_all[tr], y_all[tr])
    with torch.no_grad():
        acc = float((model(x_all[te]).argmax(1) == y_all[te]).float().mean())
    print(f"model test accuracy {acc:.3f}")
    rows: dict[tuple[str, float], list[float]] = {}
    times: dict[str, list[float]] = {}
    cosines: dict[tuple[str, float], list[float]] = {}
    for seed in SEEDS:
        g = torch.Generator().manual_seed(100 + seed)
        idx = tr[torch.randperm(len(tr), generator=g)[:300]]
        xf, yf = x_all[idx], y_all[idx]
        before = forget_loss(model, xf, yf)
        full = forget_loss(ascend(model, xf, yf, torch.ones(len(xf))), xf, yf)
        g_full = mean_grad(model, xf, yf, torch.ones(len(xf)))
        for name, (kind, opts) in candidates().items():
            for r in RATIOS:
                t0 = time.perf_counter()
                sel_obj = erasus.get_selector(name, seed=seed, **opts)
                if kind == "embeddings":
                    sel = sel_obj.select(ratio=r, features=F.embeddings(model, (xf, yf), progress=False), labels=yf)
                elif kind == "logits":
                    sel = sel_obj.select(ratio=r, model=model, data=(xf, yf))
                elif kind == "gradients":
                    sel = sel_obj.select(ratio=r, features=F.per_sample_gradients(
                        model, (xf, yf), proj_dim=256, seed=seed, progress=False))
                else:
                    sel = sel_obj.select(ratio=r, model=model, data=(xf, yf))
                times.setdefault(name, []).append(time.perf_counter() - t0)
                i = torch.as_tensor(sel.indices)
                w = torch.as_tensor(sel.weights).clamp_min(0)
                if float(w.sum()) == 0:
                    w = torch.ones(len(i))
                after = forget_loss(ascend(model, xf[i], yf[i], w), xf, yf)
                rows.setdefault((name, r), []).append(abs(after - full) / abs(full - before))
                cosines.setdefault((name, r), []).append(float(torch.nn.functional.cosine_similarity(
                    mean_grad(model, xf[i], yf[i], w), g_full, dim=0)))
    names = sorted({n for n, _ in rows}, key=lambda n: np.mean([np.mean(rows[(n, r)]) for r in RATIOS]))
    print("| selector | " + " | ".join(f"gap r={r}" for r in RATIOS) + " | mean gap | "
          + " | ".join(f"cos r={r}" for r in RATIOS) + " | sec/selection |")
    print("|---|" + "---|" * (2 * len(RATIOS) + 2))
    for n in names:
        gaps = [np.mean(rows[(n, r)]) for r in RATIOS]
        cos = [np.mean(cosines[(n, r)]) for r in RATIOS]
        print(f"| {n} | " + " | ".join(f"{v:.3f}" for v in gaps) + f" | {np.mean(gaps):.3f} | "
              + " | ".join(f"{v:.3f}" for v in cos) + f" | {np.mean(times[n]):.3f} |")


if __name__ == "__main__":
    main()
