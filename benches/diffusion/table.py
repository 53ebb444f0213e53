"""Print the RESULTS.md table from ``results/*.json``: ``python benches/diffusion/table.py`` (rows in run.py's
config order)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from run import RESULTS, configs  # noqa: E402


def pct(r: dict, key: str) -> str:
    if key not in r:
        return "-"
    return f"{100 * r[key]:.1f} ± {100 * r[f'{key}_std']:.1f}"


def num(r: dict, key: str, fmt: str = ".2f") -> str:
    return format(r[key], fmt) if key in r else "-"


def main() -> None:
    rows = {p.stem: json.loads(p.read_text()) for p in sorted(RESULTS.glob("*.json"))}
    order = [n for n, _ in configs()]
    print("| config | erasure acc. (%) | retained acc. (%) | CLIP forget | CLIP retain | FID | KID | retain pixel L2 "
          "| retain feat. L2 | n forget | unlearn s | load (1-min avg) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name in [n for n in order if n in rows] + sorted(set(rows) - set(order)):
        r = rows[name]
        t = f"{r['unlearn_s']:.0f}" if "unlearn_s" in r else "-"
        ld = r["load_before"].split("load average:")[-1].split(",")[0].strip()
        print(f"| {name} | {pct(r, 'erasure_accuracy')} | {pct(r, 'retained_accuracy')} | "
              f"{num(r, 'forget_clip_score', '.1f')} | {num(r, 'retain_clip_score', '.1f')} | {r['fid']:.2f} | "
              f"{r['kid']:.1f} ± {r['kid_std']:.1f} | {num(r, 'retain_pixel_l2')} | {num(r, 'retain_feature_l2')} | "
              f"{r.get('n_forget', '-')} | {t} | {ld} |")


if __name__ == "__main__":
    main()
