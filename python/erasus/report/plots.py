"""The report's figures. Each function takes plain result rows and writes one PNG."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ..io import atomic_path

Row = Mapping[str, Any]
METRICS = ("forget_acc", "retain_acc", "test_acc", "mia")
GAP_LABEL = "avg gap to retrained (lower is better)"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | Path) -> Path:
    """Lay out, write ``fig`` to ``path`` as PNG and close it."""
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:  # a killed run leaves the old figure, never half a PNG
        fig.savefig(tmp, dpi=110, format="png")
    _pyplot().close(fig)
    return path


def _label(row: Row) -> str:
    frac = row.get("fraction")
    part = "full" if frac is None or frac >= 1.0 else f"{row.get('selector')} {frac:.0%}"
    return f"{row.get('strategy')} / {part}"


def plot_metric_bars(rows: Sequence[Row], reference: Row | None, path: str | Path, *, title: str = "") -> Path:
    """Grouped bars of forget/retain/test accuracy and MIA per method, with the retrained model as a line."""
    plt = _pyplot()
    labels = [_label(r) for r in rows]
    x = np.arange(len(METRICS))
    width = 0.8 / max(1, len(rows))
    fig, ax = plt.subplots(figsize=(max(7, 1.2 * len(METRICS) + 0.35 * len(rows)), 4.5))
    for i, (row, label) in enumerate(zip(rows, labels)):
        ax.bar(x - 0.4 + width * (i + 0.5), [row.get(m, np.nan) for m in METRICS], width, label=label)
    if reference is not None:
        for j, m in enumerate(METRICS):
            ax.hlines(reference.get(m, np.nan), j - 0.45, j + 0.45, colors="black", linestyles="--",
                      label="retrained" if j == 0 else None)
    ax.set_xticks(x, METRICS)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("value")
    ax.set_title(title or "metrics per method (dashed: retrained model)")
    ax.legend(fontsize=7, ncol=2, loc="lower left")
    return _save(fig, path)


def plot_pareto(rows: Sequence[Row], path: str | Path, *, title: str = "") -> Path:
    """Wall time (selection + unlearning) against avg gap to the retrained model; the Pareto front is drawn."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    pts = [(float(r["time_s"]), float(r["avg_gap"]), _label(r)) for r in rows
           if r.get("time_s") is not None and r.get("avg_gap") is not None]
    for t, g, label in pts:
        ax.scatter(t, g, s=30)
        ax.annotate(label, (t, g), fontsize=6, xytext=(3, 3), textcoords="offset points")
    front, best = [], np.inf
    for t, g, _ in sorted(pts):
        if g < best:
            front.append((t, g))
            best = g
    if front:
        ax.plot(*zip(*front), color="black", lw=1, ls="--", label="Pareto front")
        ax.legend(fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("time (s, log scale)")
    ax.set_ylabel(GAP_LABEL)
    ax.set_title(title or "time versus forgetting")
    return _save(fig, path)


def plot_coreset_curve(rows: Iterable[Row], path: str | Path, *, title: str = "") -> Path:
    """Avg gap against coreset fraction, one line per (selector, strategy), mean ± std over seeds."""
    plt = _pyplot()
    groups: dict[tuple[str, str], dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        if r.get("avg_gap") is None or r.get("fraction") is None:
            continue
        groups[(str(r["strategy"]), str(r["selector"]))][float(r["fraction"])].append(float(r["avg_gap"]))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for (strategy, selector), by_frac in sorted(groups.items()):
        fr = sorted(by_frac)
        mean = np.array([np.mean(by_frac[f]) for f in fr])
        std = np.array([np.std(by_frac[f]) for f in fr])
        ax.errorbar(np.array(fr) * 100, mean, yerr=std, marker="o", ms=3, capsize=2, label=f"{strategy} / {selector}")
    ax.set_xscale("log")
    ax.set_xlabel("coreset size (% of the forget set, log scale)")
    ax.set_ylabel(GAP_LABEL)
    ax.set_title(title or "coreset fraction versus forgetting")
    ax.legend(fontsize=6, ncol=2)
    return _save(fig, path)


def plot_selection(features: np.ndarray, selections: Mapping[str, np.ndarray], path: str | Path, *,
                   labels: np.ndarray | None = None, title: str = "") -> Path:
    """2-D PCA projection of the forget-set features with each selector's picks highlighted."""
    from sklearn.decomposition import PCA

    plt = _pyplot()
    xy = PCA(n_components=2, random_state=0).fit_transform(np.asarray(features, dtype=np.float64))
    n = max(1, len(selections))
    cols = min(3, n)
    rows_ = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows_, cols, figsize=(4 * cols, 3.6 * rows_), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    for ax, (name, idx) in zip(axes.flat, selections.items()):
        ax.scatter(xy[:, 0], xy[:, 1], s=5, c=labels if labels is not None else "lightgray",
                   cmap="tab10", alpha=0.35)
        ax.scatter(xy[idx, 0], xy[idx, 1], s=22, facecolors="none", edgecolors="black", linewidths=0.9)
        ax.set_title(f"{name} ({len(idx)} picks)", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title or "forget-set features (PCA) and the chosen coreset points")
    return _save(fig, path)
