"""Tables of protocol v3 from ``run.py``'s results: best Avg. Gap and time-to-target, mean ± std over seeds.

    python benches/unlearning/v3/table.py full6/class_s0.json full6/class_s1.json full6/class_s2.json

Time-to-target of a (strategy, fraction, selector) in one seed: the cheapest configuration of the grid (learning
rate, or SSD's alpha) whose run reached within 1 Avg. Gap point of the full set's best (a check with
``value < best + 1``, step >= 1), charged features + selection + unlearning up to that check, probes excluded.
It is given in **CPU seconds** of the single-threaded process (``cpu_s`` of the checks, ``*_cpu_s`` of the
timings; the machine's load inflates them far less than wall time) and in LOADED wall seconds; runs recorded
before CPU seconds existed (the earlier files) fall back to wall. "unlearning only": the same check's unlearning
CPU seconds (a user whose selection features already exist). Paired comparison: per seed, selector minus random
at the same fraction. "original already within target": the untouched model already meets it. "Target": the
issue's test for a selected coreset — reached in every seed, mean t2t <= 25% of the full set's, and faster than
random in every seed.
"""

from __future__ import annotations

import json
import math
import sys
from collections import defaultdict

import numpy as np


def _cell(values: list, fmt: str = "{:.2f}") -> str:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return "-"
    return (fmt + " ± " + fmt).format(np.mean(vals), np.std(vals)) + ("" if len(vals) == len(values) else
                                                                      f" ({len(vals)}/{len(values)})")


def _parse(key: str) -> tuple[str, str, str, float]:
    parts = key.split("|")
    if len(parts) == 4:  # the earlier runs: one fraction (10%), the full set at 100%
        seed, strategy, selector, _ = parts
        return seed, strategy, selector, 1.0 if selector == "full" else 0.1
    seed, strategy, selector, fraction, _ = parts
    return seed, strategy, selector, float(fraction)


def _times(run: dict, hit: dict) -> tuple[float, float, float]:
    t = run["timings"]
    if "cpu_s" in hit:
        cpu = hit["cpu_s"] + t.get("features_cpu_s", 0.0) + t.get("selection_cpu_s", 0.0)
        return cpu, hit["elapsed_s"] + t.get("features_s", 0.0) + t.get("selection_s", 0.0), hit["cpu_s"]
    wall = hit["elapsed_s"] + t.get("features_s", 0.0) + t.get("selection_s", 0.0)
    return wall, wall, hit["elapsed_s"]


def analyse(results: dict) -> tuple[dict, list[str]]:
    by = defaultdict(list)  # (seed, strategy, selector, fraction) -> runs over the grid
    for key, run in results["runs"].items():
        by[_parse(key)].append(run)
    out: dict = defaultdict(dict)
    for (seed, strategy, selector, fraction), grid in by.items():
        best = min((c["value"] for r in grid for c in r["checks"][1:]), default=float("nan"))
        full = by.get((seed, strategy, "full", 1.0))
        full_best = min((c["value"] for r in full for c in r["checks"][1:]), default=float("nan")) if full \
            else float("nan")
        target = full_best + 1.0
        hits = []
        for r in grid:
            hit = next((c for c in r["checks"][1:] if c["value"] < target), None)
            if hit is not None:
                hits.append(_times(r, hit))
        first = next((r for r in grid if r["checks"]), None)
        untouched = bool(first and first["checks"][0]["value"] < target)
        cheapest = min(hits) if hits else (None, None, None)
        out[(strategy, fraction, selector)][seed] = {
            "best": best, "t2t": cheapest[0], "t2t_wall": cheapest[1], "t2t_unlearn": cheapest[2],
            "reached": bool(hits), "target": target, "untouched": untouched,
            "diverged": sum(1 for r in grid if r.get("diverged"))}
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
    print(f"config: {json.dumps({k: v for k, v in cfg.items() if k not in ('out', 'seeds')})}\n")
    for seed, s in sorted(results["seeds"].items()):
        cpu = (f", {s['train_cpu_s']:.0f} CPU s / {s['retrain_cpu_s']:.0f} CPU s" if "train_cpu_s" in s else "")
        print(f"- seed {seed}: original test acc {s['original_test_acc']:.4f} (trained in {s['train_s']:.0f} s "
              f"wall), oracle test acc {s['oracle_test_acc']:.4f} (retrained in {s['retrain_s']:.0f} s wall){cpu}; "
              f"forget acc {s['original_forget_acc']:.3f} -> oracle {s['oracle_forget_acc']:.3f}")
    print("\n| strategy | fraction | selector | best Avg. Gap (pts) | reached (seeds) | original within target (seeds) | diverged runs | "
          "time-to-target (CPU s) | t2t wall (s, LOADED) | unlearning only (CPU s) | t2t / full t2t | "
          "paired vs random: t2t diff (CPU s) | paired vs random: best-gap diff | Target |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    order = {"full": 0, "random": 1}
    for (strategy, fraction, selector) in sorted(table, key=lambda k: (k[0], -k[1], order.get(k[2], 2), k[2])):
        rows = table[(strategy, fraction, selector)]
        full = table.get((strategy, 1.0, "full"), {})
        rnd = table.get((strategy, fraction, "random"), {})
        ss = [s for s in seeds if s in rows]
        ratio = [rows[s]["t2t"] / full[s]["t2t"] if rows[s]["t2t"] is not None and s in full and full[s]["t2t"]
                 else None for s in ss]
        reached = sum(rows[s]["reached"] for s in ss)
        paired_t = paired_g = "-"
        target = "-"
        if selector not in ("full", "random") and rnd:
            dt = [rows[s]["t2t"] - rnd[s]["t2t"] if s in rnd and rows[s]["t2t"] is not None
                  and rnd[s]["t2t"] is not None else None for s in ss]
            dg = [rows[s]["best"] - rnd[s]["best"] for s in ss if s in rnd]
            # reaching the target where random did not (in the same seed) is a win on time too
            wins = [s for s in ss if s in rnd and rows[s]["t2t"] is not None
                    and (rnd[s]["t2t"] is None or rows[s]["t2t"] < rnd[s]["t2t"])]
            paired_t = f"{_cell(dt)}; faster (or reached, random not) in {len(wins)}/{len(ss)}"
            paired_g = f"{_cell(dg)}; lower in {sum(1 for d in dg if d < 0)}/{len(dg)}"
            rvals = [r for r in ratio if r is not None]
            met = reached == len(ss) and len(rvals) == len(ss) and np.mean(rvals) <= 0.25 and len(wins) == len(ss)
            target = "**met**" if met else "no"
        print(f"| {strategy} | {fraction:g} | {selector} | {_cell([rows[s]['best'] for s in ss])} | "
              f"{reached}/{len(ss)} | {sum(rows[s]['untouched'] for s in ss)}/{len(ss)} | "
              f"{sum(rows[s]['diverged'] for s in ss)} | "
              f"{_cell([rows[s]['t2t'] for s in ss])} | {_cell([rows[s]['t2t_wall'] for s in ss])} | "
              f"{_cell([rows[s]['t2t_unlearn'] for s in ss])} | {_cell(ratio)} | {paired_t} | {paired_g} | "
              f"{target} |")


if __name__ == "__main__":
    main(sys.argv[1:])
