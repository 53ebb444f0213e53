"""Print the RESULTS.md tables from ``results/*.json``: ``python benches/diffusion/table.py``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import CACHE  # noqa: E402

_TAG = "" if CACHE.name == ".cache" else CACHE.name.removeprefix(".cache")
ORDER = ["original", "oracle", "esd_x", "esd_u", "uce", "concept_ablation", "salun", "ga",
         "salun_coreset_random", "salun_coreset_kcenter", "salun_coreset_craig",
         "ga_coreset_random", "ga_coreset_kcenter", "ga_coreset_craig"]


def pct(r: dict, key: str) -> str:
    if key not in r:
        return "-"
    return f"{100 * r[key]:.1f} ± {100 * r[f'{key}_std']:.1f}"


def main() -> None:
    rows = {p.stem: json.loads(p.read_text()) for p in sorted((HERE / f"results{_TAG}").glob("*.json"))}
    print("| config | erasure acc. (%) | retained acc. (%) | FID | KID | retain pixel L2 | retain feat. L2 "
          "| n forget | unlearn s | load (1-min avg) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in [n for n in ORDER if n in rows] + sorted(set(rows) - set(ORDER)):
        r = rows[name]
        l2 = f"{r['retain_pixel_l2']:.2f}" if "retain_pixel_l2" in r else "-"
        fl2 = f"{r['retain_feature_l2']:.2f}" if "retain_feature_l2" in r else "-"
        t = f"{r['unlearn_s']:.0f}" if "unlearn_s" in r else "-"
        ld = r["load_before"].split("load average:")[-1].split(",")[0].strip()
        print(f"| {name} | {pct(r, 'erasure_accuracy')} | {pct(r, 'retained_accuracy')} | {r['fid']:.2f} | "
              f"{r['kid']:.1f} ± {r['kid_std']:.1f} | {l2} | {fl2} | {r.get('n_forget', '-')} | {t} | "
              f"{ld} |")


if __name__ == "__main__":
    main()
