"""``erasus demo``: the main job — does a 10% coreset unlearn like the whole forget set?

On scikit-learn's bundled ``digits`` (no download): train a small CNN, forget a random 10% of the training
set and, separately, one whole class; retrain the oracle without the forget set; unlearn the whole forget
set and 10% coresets picked by each selector with three strategies; print the comparison (forget / retain /
test accuracy, MIA-Efficacy, Avg. Gap to the retrained model, wall time, speed-up versus the full forget
set) and write an HTML report with its figures.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from ..experiments import ClaimConfig, run_claim
from ..report import plot_coreset_curve, plot_metric_bars, plot_pareto, plot_selection, write_report

COLUMNS = ("strategy", "selector", "fraction", "forget_acc", "retain_acc", "test_acc", "mia", "avg_gap", "time_s",
           "speedup")


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


def write_claim_report(results: list[dict[str, Any]], out: Path, *, title: str) -> Path:
    """Figures + HTML for one or more :func:`run_claim` results (one per scenario), sealed in ``out``.

    The figures are drawn in a scratch folder first, so ``out`` only changes inside the one crash-safe write.
    """
    import tempfile

    from ..io import check_writable

    check_writable(out)
    with tempfile.TemporaryDirectory(prefix="erasus-figures-") as scratch:
        return _claim_report(results, out, Path(scratch), title=title)


def _claim_report(results: list[dict[str, Any]], out: Path, scratch: Path, *, title: str) -> Path:
    figures = []
    rows, reference = [], []
    for res in results:
        scenario = res["config"]["scenario"]
        rows += res["rows"]
        reference += res["reference"]
        retrained = next(r for r in res["reference"] if r["strategy"] == "retrain")
        figures.append(plot_metric_bars(res["rows"], retrained, scratch / f"metrics_{scenario}.png",
                                        title=f"{scenario} forgetting: metrics per method (dashed: retrained)"))
        figures.append(plot_pareto(res["rows"], scratch / f"pareto_{scenario}.png",
                                   title=f"{scenario} forgetting: time versus Avg. Gap"))
        figures.append(plot_coreset_curve(res["rows"], scratch / f"coreset_curve_{scenario}.png",
                                          title=f"{scenario} forgetting: coreset fraction versus Avg. Gap"))
        if res["selections"] and res["features"] is not None:
            figures.append(plot_selection(res["features"], res["selections"], scratch / f"selection_{scenario}.png",
                                          labels=res["labels"], title=f"{scenario} forget set (PCA of embeddings)"))
    notes = ["Avg. Gap: mean |difference| to the retrained model over forget, retain and test accuracy and "
             "MIA-Efficacy (SalUn, Fan et al. 2024); lower is better. Coreset times include computing selection "
             "features and selecting. speedup = full-forget-set time / coreset time."]
    return write_report(rows, out, reference=reference, figures=figures, title=title, notes=notes,
                        meta={"configs": [r["config"] for r in results]})


def run_demo(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from ..io import check_writable

    console = Console(stderr=args.json, width=150)
    out = check_writable(args.out)  # before a minute of training, not after
    started = time.perf_counter()
    results = []
    for scenario in ("random", "class"):
        cfg = ClaimConfig(scenario=scenario, seeds=(args.seed,), fractions=(args.fraction,))
        console.print(f"[bold]{scenario} forgetting[/bold] on digits: {', '.join(cfg.strategies)} × "
                      f"{{full, {', '.join(cfg.selectors)} at {args.fraction:.0%}}}")
        export = out / "digits" if scenario == "random" else None  # inputs for configs/unlearn_digits.yaml
        results.append(run_claim(cfg, log=lambda s: console.print(f"  {s}"), export_dir=export))
    page = write_claim_report(results, out, title="erasus demo: coreset unlearning on digits")
    elapsed = time.perf_counter() - started
    if args.json:
        print(json.dumps({"report": str(page), "seconds": elapsed,
                          "results": [{"reference": r["reference"], "rows": r["rows"]} for r in results]},
                         default=float))
        return 0
    for res in results:
        table = Table(title=f"{res['config']['scenario']} forgetting (digits, seed {args.seed})")
        for c in COLUMNS:
            table.add_column(c, justify="left" if c in ("strategy", "selector") else "right")
        for r in res["reference"]:
            table.add_row(*[_fmt(r.get(c)) for c in COLUMNS], style="bold green")
        for r in res["rows"]:
            table.add_row(*[_fmt(r.get(c)) for c in COLUMNS])
        console.print(table)
    console.print(f"report: {page}  ({elapsed:.0f} s)")
    return 0
