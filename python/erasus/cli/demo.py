"""``erasus demo``: the main job.

For now a real smoke run of the Rust core on real data: scikit-learn's bundled ``digits`` (no download) is
split into a training set and a 10% forget set, and each geometric selector picks a coreset of the forget
set; the table shows the coreset size, the selector's objective and how well the coreset covers the forget
set (mean distance of each forget point to its nearest coreset point, lower is better), against random.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from ..registry import list_selectors
from ..selectors import select

SELECTORS = ("random", "kcenter", "herding", "kmeans", "facility_location")


def coverage(x: np.ndarray, idx: np.ndarray) -> float:
    """Mean Euclidean distance from every row of ``x`` to its nearest selected row."""
    c = x[idx]
    d2 = (x * x).sum(1)[:, None] - 2 * x @ c.T + (c * c).sum(1)[None, :]
    return float(np.sqrt(np.maximum(d2.min(1), 0)).mean())


def run_demo(args: argparse.Namespace) -> int:
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    rng = np.random.default_rng(args.seed)
    forget = np.sort(rng.choice(len(x), size=len(x) // 10, replace=False))
    xf = x[forget]
    k = args.k or max(1, len(xf) // 10)
    available = set(list_selectors())
    rows = []
    for method in SELECTORS:
        if method not in available:
            continue
        t0 = time.perf_counter()
        sel = select(xf, k, method=method, seed=args.seed)
        ms = (time.perf_counter() - t0) * 1e3
        rows.append(
            {
                "selector": method,
                "k": len(sel),
                "objective": sel.objective,
                "coverage": coverage(xf, sel.indices),
                "weights_sum": float(sel.weights.sum()),
                "ms": ms,
                "forget_indices": forget[sel.indices[:8]].tolist(),
            }
        )
    if args.json:
        print(json.dumps({"n_forget": len(xf), "k": k, "results": rows}, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"coresets of a {len(xf)}-sample forget set of digits (k = {k})")
    for col in ("selector", "objective", "coverage (lower=better)", "sum of weights", "time (ms)", "first picks"):
        table.add_column(col)
    for r in rows:
        obj = "-" if r["objective"] is None else f"{r['objective']:.4g}"
        table.add_row(r["selector"], obj, f"{r['coverage']:.4f}", f"{r['weights_sum']:.0f}", f"{r['ms']:.1f}",
                      str(r["forget_indices"]))
    Console().print(table)
    return 0
