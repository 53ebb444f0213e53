"""Markdown tables of ``run.py`` results: ``python benches/llm/table.py benches/llm/v2/*.json``.

Per run: perplexities as ratios to the start model, the Min-K% AUC, time, and for coreset runs the share of
the full run's forget-perplexity increase they reach ("of full increase") and of its time ("of full time").
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


HEADER = ("| strategy | forget set | lr | k | steps | forget ppl (x start) | held-out ppl (x) | retain ppl (x) "
          "| held-out retain ppl (x) | Min-K% AUC | time s | of full increase | of full time |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|---|---|")


def row(r: dict[str, Any], start: dict[str, float], full: dict[str, Any] | None) -> str:
    """One run as a table row; ``full`` is the same strategy's full-set run (None: no share columns)."""
    share = time_share = "—"
    if full is not None and r is not full:
        gain = full["ppl_forget"] - start["ppl_forget"]
        share = f"{(r['ppl_forget'] - start['ppl_forget']) / gain:.0%}" if gain else "—"
        time_share = f"{r['time_s'] / full['time_s']:.0%}"
    lr = r.get("options", {}).get("lr")
    return (f"| {r['strategy']} | {r['selector']} | {lr:g} | {r['k']} | {r['steps']} | {r['ppl_forget']:.2f} "
            f"({r['ppl_forget'] / start['ppl_forget']:.2f}x) | {r['ppl_holdout']:.1f} "
            f"({r['ppl_holdout'] / start['ppl_holdout']:.2f}x) | {r['ppl_retain']:.1f} "
            f"({r['ppl_retain'] / start['ppl_retain']:.3f}x) | {r['ppl_retain_eval']:.1f} "
            f"({r['ppl_retain_eval'] / start['ppl_retain_eval']:.3f}x) | {r['min_k_auc']:.3f} | {r['time_s']:.0f} "
            f"| {share} | {time_share} |")


def table(path: Path) -> str:
    result = json.loads(path.read_text())
    start = result["start"]
    full = {r["strategy"]: r for r in result["runs"] if r["selector"] == "full"}
    lines = [f"`{path.name}` (start: forget {start['ppl_forget']:.2f}, held-out {start['ppl_holdout']:.1f}, "
             f"retain {start['ppl_retain']:.1f}, held-out retain {start['ppl_retain_eval']:.1f}, "
             f"Min-K% AUC {start['min_k_auc']:.3f})", "", HEADER]
    lines += [row(r, start, full.get(r["strategy"])) for r in result["runs"]]
    return "\n".join(lines)


if __name__ == "__main__":
    print("\n\n".join(table(Path(p)) for p in sys.argv[1:]))
