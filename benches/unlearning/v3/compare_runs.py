"""Do two sets of ``run.py`` results hold the same runs? Avg. Gap trajectories, and CPU seconds side by side.

    python compare_runs.py --a-rev 7e3d612 full6/class_s0.json full6/class_s1.json full6/class_s2.json \
        --b full7/class_s0.json full7/class_s1.json full7/class_s2.json

``--a`` files are read as committed at ``--a-rev`` (the earlier session's runs) or from disk. For every run key in
both: are the (step, Avg. Gap) checks identical, and, where both stopped at the same step, the ratio of their CPU
seconds at that check (same work, two machines or loads).
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def _runs(paths: list[str], rev: str | None) -> dict:
    runs: dict = {}
    for path in paths:
        if rev:
            rel = (HERE / path).resolve().relative_to(HERE.parents[2])
            text = subprocess.run(["git", "-C", str(HERE), "show", f"{rev}:{rel}"], capture_output=True, text=True,
                                  check=True).stdout
        else:
            text = (HERE / path).read_text()
        runs.update(json.loads(text)["runs"])
    return runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a", nargs="+")
    ap.add_argument("--a-rev", help="read the --a files as committed at this git revision")
    ap.add_argument("--b", nargs="+", required=True)
    args = ap.parse_args()
    a, b = _runs(args.a, args.a_rev), _runs(args.b, None)
    common = sorted(set(a) & set(b))

    def trajectory(run: dict) -> list:
        return [(c["step"], c["value"]) for c in run["checks"]]

    same = sum(trajectory(a[k]) == trajectory(b[k]) for k in common)
    print(f"{len(common)} runs in both; identical (step, Avg. Gap) trajectories: {same}")
    for kind in ("full", "coreset"):
        ratio = [a[k]["checks"][-1]["cpu_s"] / b[k]["checks"][-1]["cpu_s"] for k in common
                 if (k.split("|")[2] == "full") == (kind == "full") and len(a[k]["checks"]) > 1
                 and a[k]["checks"][-1]["step"] == b[k]["checks"][-1]["step"] and b[k]["checks"][-1]["cpu_s"] > 0]
        if ratio:
            print(f"{kind} runs: CPU s at the last check, a / b: median {np.median(ratio):.2f} (quartiles "
                  f"{np.percentile(ratio, 25):.2f}-{np.percentile(ratio, 75):.2f}, {len(ratio)} runs)")


if __name__ == "__main__":
    main()
