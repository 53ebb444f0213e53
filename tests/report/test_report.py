import base64
import json
import re

import numpy as np

from erasus.report import plot_coreset_curve, plot_metric_bars, plot_pareto, plot_selection, write_report

ROWS = [
    {"scenario": "random", "strategy": "grad_diff", "selector": "full", "fraction": 1.0, "forget_acc": 0.9,
     "retain_acc": 0.97, "test_acc": 0.95, "mia": 0.6, "avg_gap": 0.03, "time_s": 2.0, "seed": 0},
    {"scenario": "random", "strategy": "grad_diff", "selector": "kcenter", "fraction": 0.1, "forget_acc": 0.93,
     "retain_acc": 0.98, "test_acc": 0.95, "mia": 0.62, "avg_gap": 0.04, "time_s": 0.3, "seed": 0},
    {"scenario": "random", "strategy": "grad_diff", "selector": "kcenter", "fraction": 0.1, "forget_acc": 0.93,
     "retain_acc": 0.98, "test_acc": 0.95, "mia": 0.62, "avg_gap": 0.06, "time_s": 0.3, "seed": 1},
]
REF = {"scenario": "random", "strategy": "retrain", "selector": "-", "forget_acc": 0.94, "retain_acc": 0.99,
       "test_acc": 0.95, "mia": 0.55}


def _is_png(path):
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_figures_and_self_contained_html(tmp_path):
    figs = [
        plot_metric_bars(ROWS, REF, tmp_path / "metrics.png"),
        plot_pareto(ROWS, tmp_path / "pareto.png"),
        plot_coreset_curve(ROWS, tmp_path / "coreset_curve.png"),
        plot_selection(np.random.default_rng(0).normal(size=(50, 6)), {"kcenter": np.arange(5)},
                       tmp_path / "selection.png", labels=np.arange(50) % 3),
    ]
    assert all(_is_png(f) for f in figs)
    page = write_report(ROWS, tmp_path, reference=[REF], figures=figs, title="t", meta={"seed": 0})
    text = page.read_text()
    # every figure is embedded as a data URI (the page needs no other file) and decodes to the PNG on disk
    uris = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", text)
    assert len(uris) == len(figs)
    assert {base64.b64decode(u) for u in uris} == {f.read_bytes() for f in figs}
    assert "<img" in text and "src='http" not in text and "kcenter" in text
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["rows"][1]["selector"] == "kcenter" and saved["reference"][0]["strategy"] == "retrain"
