"""Tables of protocol v3 from ``run.py``'s results: best Avg. Gap and time-to-target, mean ± std over seeds.

    python benches/unlearning/v3/table.py benches/unlearning/v3/results_class.json
    python benches/unlearning/v3/table.py full/class_s0.json full/class_s1.json full/class_s2.json  # one per seed

Time-to-target of a (strategy, selector) in one seed: the cheapest learning rate of the grid whose run reached
within 1 Avg. Gap point of the full set's best (a check with ``value < best + 1``, step >= 1), charged
features + selection + unlearning up to that check ("unlearning only": the same check's unlearning seconds, for
a user whose selection features are already computed). Paired comparison: per seed, selector minus random.
"original already within target": the untouched model's Avg. Gap (step 0) already meets it — unlearning did
not improve on doing nothing; a coreset run then stops at step 0 and has no time-to-target.
"""

from __future__ import annotations

import json
import math
import sys
from collections import defaultdict

import numpy as np


def _cell(values: list[float], fmt: str = "{:.2f}") -> str:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return "-"
    return (fmt + " ± " + fmt).format(np.mean(vals), np.std(vals)) + ("" if len(vals) == len(values) else
                                                                      f" ({len(vals)}/{len(values)})")


def analyse(results: dict) -> tuple[dict, list[str]]:
    runs = results["runs"]
    by = defaultdict(list)  # (seed, strategy, selector) -> runs over the lr grid
    for key, run in runs.items():
        seed, strategy, selector, _ = key.split("|")
        by[(seed, strategy, selector)].append(run)
    out: dict = defaultdict(dict)
    for (seed, strategy, selector), grid in by.items():
        checks = [c for r in grid for c in r["checks"][1:]]
        best = min((c["value"] for c in checks), default=float("nan"))
        full = by.get((seed, strategy, "full"))
        full_best = min(c["value"] for r in full for c in r["checks"][1:]) if full else float("nan")
        target = full_best + 1.0
        times, steps_only = [], []
        for r in grid:
            hit = next((c for c in r["checks"][1:] if c["value"] < target), None)
            if hit is not None:
                t = r["timings"]
                times.append(hit["elapsed_s"] + t.get("features_s", 0.0) + t.get("selection_s", 0.0))
                steps_only.append(hit["elapsed_s"])
        untouched = grid[0]["checks"][0]["value"] < target if grid and grid[0]["checks"] else False
        out[(strategy, selector)][seed] = {"best": best, "t2t": min(times) if times else None,
                                           "reached": bool(times),
                                           "t2t_unlearn": min(steps_only) if steps_only else None, "target": target, "untouched": untouched}
    return out, sorted({k[0] for k in by})


def load(paths: list[str]) -> dict:
    """One results dict from several ``run.py`` outputs (e.g. one process per seed); a run key may appear once."""
    merged: dict = {"runs": {}, "seeds": {}}
    for path in paths:
        results = json.load(open(path))
        clash = sorted(set(results["runs"]) & set(merged["runs"]))
        if clash:
            raise SystemExit(f"{path}: runs {clash[:3]} also appear in an earlier file")
        merged["runs"].update(results["runs"])
        merged["seeds"].update(results["seeds"])
        merged["config"] = results["config"]
    return merged


def main(paths: list[str]) -> None:
    results = load(paths)
    cfg = results["config"]
    table, seeds = analyse(results)
    print(f"config: {json.dumps({k: v for k, v in cfg.items() if k != 'out'})}\n")
    for seed, s in sorted(results["seeds"].items()):
        print(f"- seed {seed}: original test acc {s['original_test_acc']:.3f} (trained in {s['train_s']:.0f} s), "
              f"oracle test acc {s['oracle_test_acc']:.3f} (retrained in {s['retrain_s']:.0f} s), forget acc "
              f"{s['original_forget_acc']:.3f} -> oracle {s['oracle_forget_acc']:.3f}")
    print("\n| strategy | selector | best Avg. Gap (pts) | reached target (seeds) | original already within target "
          "(seeds) | time-to-target (s) | unlearning only (s) | t2t / full t2t | paired vs random: t2t diff (s) | paired vs random: "
          "best-gap diff |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for (strategy, selector) in sorted(table, key=lambda k: (k[0], k[1] != "full", k[1] != "random", k[1])):
        rows = table[(strategy, selector)]
        full = table.get((strategy, "full"), {})
        rnd = table.get((strategy, "random"), {})
        best = [rows[s]["best"] for s in seeds if s in rows]
        t2t = [rows[s]["t2t"] for s in seeds if s in rows]
        t2u = [rows[s]["t2t_unlearn"] for s in seeds if s in rows]
        ratio = [rows[s]["t2t"] / full[s]["t2t"] if rows[s]["t2t"] is not None and s in full and full[s]["t2t"]
                 else None for s in seeds if s in rows]
        reached = sum(rows[s]["reached"] for s in seeds if s in rows)
        untouched = sum(rows[s]["untouched"] for s in seeds if s in rows)
        paired_t, paired_g, paired_u = "-", "-", "-"
        if selector not in ("full", "random") and rnd:
            dt = [rows[s]["t2t"] - rnd[s]["t2t"] if s in rnd and rows[s]["t2t"] is not None
                  and rnd[s]["t2t"] is not None else None for s in seeds if s in rows]
            dg = [rows[s]["best"] - rnd[s]["best"] for s in seeds if s in rows and s in rnd]
            # reaching the target where random did not (in the same seed) is a win on time too
            wins_t = sum(1 for d in dt if d is not None and d < 0) + sum(
                1 for s in seeds if s in rows and s in rnd and rows[s]["t2t"] is not None and rnd[s]["t2t"] is None)
            wins_g = sum(1 for d in dg if d < 0)
            paired_t = f"{_cell(dt)}; faster (or reached, random not) in {wins_t}/{len(dt)}"
            paired_g = f"{_cell(dg)}; lower in {wins_g}/{len(dg)}"
            du = [rows[s]["t2t_unlearn"] - rnd[s]["t2t_unlearn"] if s in rnd and rows[s]["t2t_unlearn"] is not None
                  and rnd[s]["t2t_unlearn"] is not None else None for s in seeds if s in rows]
            wins_u = sum(1 for d in du if d is not None and d < 0)
            paired_u = f"{_cell(du)}; faster in {wins_u}/{len(du)}"
        print(f"| {strategy} | {selector} | {_cell(best)} | {reached}/{len(best)} | {untouched}/{len(best)} | "
              f"{_cell(t2t)} | {_cell(t2u)} | "
              f"{_cell(ratio, '{:.2f}')} | {paired_t} | {paired_g} | {paired_u} |")


if __name__ == "__main__":
    main(sys.argv[1:])
