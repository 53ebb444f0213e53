"""Markdown tables of a sweep / grid JSON written by run.py (values in %, mean ± std over seeds).

    python benches/vlm/table.py benches/vlm/sweep_*.json benches/vlm/results_*.json
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

SELECTOR_ORDER = ("full", "random", "kcenter", "herding", "craig")
KEYS = (("zero_shot_top1_forget", "forget ZS top-1"), ("zero_shot_top1_retain", "retain ZS top-1"),
        ("retain_image_to_text_recall@10", "retain i→t R@10"), ("retain_text_to_image_recall@10", "retain t→i R@10"),
        ("cascade_image_cosine_distance", "image cascade"), ("cascade_text_cosine_distance", "text cascade"))


def cell(rows: list[dict], key: str, scale: float = 100.0) -> str:
    vals = [r[key] for r in rows if key in r]
    if not vals:
        return "-"
    if len(vals) == 1:
        return f"{vals[0] * scale:.1f}"
    return f"{np.mean(vals) * scale:.1f} ± {np.std(vals) * scale:.1f}"


def reference(doc: dict, split: str) -> str:
    lines = ["| family | model | forget ZS top-1 | retain ZS top-1 | retain i→t R@10 | retain t→i R@10 |",
             "|---|---|---|---|---|---|"]
    for fam, ref in doc["reference"].items():
        for kind in ("start", "oracle"):
            s = ref[kind][split]
            lines.append(f"| {fam} | {kind} | " + " | ".join(f"{s[k] * 100:.1f}" for k, _ in KEYS[:4]) + " |")
    return "\n".join(lines)


def table(doc: dict, *, by_lr: bool) -> str:
    head = "| family | method | " + ("lr | " if by_lr else "lr | selector | ") + " | ".join(n for _, n in KEYS)
    head += " | gap to oracle | time (s) | runs |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in doc["rows"]:
        groups[(r["family"], r["method"], r["lr"], r["selector"])].append(r)
    for (fam, method, lr, sel), rows in groups.items():
        ok = [r for r in rows if not r.get("diverged")]
        div = len(rows) - len(ok)
        lead = f"| {fam} | {method} | {lr:g} | " + ("" if by_lr else f"{sel} | ")
        lines.append(lead + " | ".join(cell(ok, k) for k, _ in KEYS) + f" | {cell(ok, 'gap')} | "
                     f"{cell(ok, 'time_s', 1.0)} | {len(ok)}" + (f" ({div} diverged)" if div else "") + " |")
    return "\n".join(lines)


def merged(paths: list[str]) -> dict[str, dict]:
    """The rows of every file, by split (``val`` = sweep, ``test`` = grid); a grid may be split over files that
    ran in parallel processes (``results_<family>.json`` and ``results_<family>_b.json``)."""
    out: dict[str, dict] = {}
    for path in paths:
        doc = json.loads(Path(path).read_text())
        if not doc["rows"]:
            continue
        split = doc["rows"][0]["split"]
        m = out.setdefault(split, {"rows": [], "reference": {}, "chosen": {}})
        seen = {(r["family"], r["method"], r["lr"], r["selector"], r["seed"]) for r in m["rows"]}
        m["rows"] += [r for r in doc["rows"] if (r["family"], r["method"], r["lr"], r["selector"], r["seed"]) not in seen]
        m["reference"].update(doc["reference"])
        m["chosen"].update(doc.get("chosen", {}))
    return out


def main() -> int:
    for split, doc in sorted(merged(sys.argv[1:]).items(), reverse=True):
        doc["rows"].sort(key=lambda r: (r["family"], r["method"], r["lr"], SELECTOR_ORDER.index(r["selector"])))
        print(f"## scored on {split}\n\n{reference(doc, split)}\n\n{table(doc, by_lr=split == 'val')}\n")
        if doc["chosen"]:
            print("chosen learning rates:", json.dumps(doc["chosen"]), "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
