"""One self-contained HTML page: the results table and the figures, embedded as base64 PNGs."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any, Mapping, Sequence

COLUMNS = ("scenario", "strategy", "selector", "fraction", "forget_acc", "retain_acc", "test_acc", "mia",
           "avg_gap", "time_s", "speedup")

STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}
table{border-collapse:collapse;font-size:13px;margin:1em 0}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f3f3f3} td:nth-child(-n+3){text-align:left}
tr.ref td{font-weight:bold;background:#eef6ee}
img{max-width:100%;border:1px solid #eee;margin:.5em 0}
.note{color:#555;font-size:13px}
"""


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 100 else f"{value:.1f}"
    return html.escape(str(value))


def _table(rows: Sequence[Mapping[str, Any]], reference: Sequence[Mapping[str, Any]]) -> str:
    head = "".join(f"<th>{c}</th>" for c in COLUMNS)
    body = []
    for r in reference:
        body.append("<tr class='ref'>" + "".join(f"<td>{_fmt(r.get(c))}</td>" for c in COLUMNS) + "</tr>")
    for r in rows:
        body.append("<tr>" + "".join(f"<td>{_fmt(r.get(c))}</td>" for c in COLUMNS) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f"<img alt='{html.escape(path.stem)}' src='data:image/png;base64,{data}'>"


def write_report(
    rows: Sequence[Mapping[str, Any]],
    out_dir: str | Path,
    *,
    reference: Sequence[Mapping[str, Any]] = (),
    figures: Sequence[str | Path] = (),
    title: str = "erasus report",
    notes: Sequence[str] = (),
    meta: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``report.html``, ``results.json`` and the figures into ``out_dir``, sealed by its manifest.

    Figures are embedded in the page (not linked) and also copied into the folder; everything is written
    crash-safely (:func:`erasus.io.write_run_folder`): after a kill the folder has the previous complete
    report or reads as incomplete, never a new page beside old results.
    """
    from ..io import write_run_folder

    out = Path(out_dir)
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"]
    for note in notes:
        parts.append(f"<p class='note'>{html.escape(note)}</p>")
    parts.append("<h2>Results</h2>" + _table(rows, reference))
    for fig in figures:
        fig = Path(fig)
        parts.append(f"<h2>{html.escape(fig.stem.replace('_', ' '))}</h2>{_img(fig)}")
    if meta:
        parts.append("<h2>Run</h2><pre>" + html.escape(json.dumps(meta, indent=2, default=str)) + "</pre>")
    parts.append("</body></html>")
    page_text = "".join(parts)
    results_text = json.dumps({"reference": list(reference), "rows": list(rows), "meta": dict(meta or {})},
                              indent=2, default=str)
    writers: dict[str, Any] = {}
    for fig in figures:
        data = Path(fig).read_bytes()
        writers[Path(fig).name] = lambda path, data=data: path.write_bytes(data)
    writers["report.html"] = lambda path: path.write_text(page_text, encoding="utf-8")
    writers["results.json"] = lambda path: path.write_text(results_text)
    write_run_folder(out, writers)
    return out / "report.html"
