"""GreeDi for the submodular functions of the Rust core (``method="submodular"``) against the single-machine
greedy on the same data, for benches/distributed/RESULTS.md: f over all rows of both selections (float64, from
the definitions), m = 2, 4, 8 partitions.

    .venv/bin/python benches/distributed/bench_submodular.py --n 2000 --k 20
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import ray

import erasus
from erasus.distributed import select_distributed

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tests", "distributed"))
from dist_reference import blobs, brute_submodular  # noqa: E402

CASES = [("graph_cut", {}), ("saturated_coverage", {}), ("saturated_coverage", {"alpha": 0.3}),
         ("sum_redundancy", {}), ("feature_based", {"concave": "log"}), ("log_determinant", {"reg": 0.5})]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--d", type=int, default=8)
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--out", default="benches/distributed/results_submodular.json")
    a = ap.parse_args()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    rows = []
    x0 = blobs(a.n, a.d, seed=5)
    for fn, opts in CASES:
        x = np.abs(x0) if fn == "feature_based" else x0
        single = erasus.select(x, a.k, "submodular", function=fn, seed=0, **opts)
        f_single = brute_submodular(x, single.indices, fn, **opts)
        for m in (2, 4, 8):
            load = os.getloadavg()[0]
            t = time.perf_counter()
            sel = select_distributed(x, a.k, "submodular", partitions=m, seed=0, progress=False, function=fn, **opts)
            rows.append(dict(function=fn, options=opts, n=a.n, k=a.k, m=m, seconds=time.perf_counter() - t, load=load,
                             f=sel.objective, f_single=f_single, ratio=sel.objective / f_single,
                             winner=sel.metadata["winner"]))
            print(rows[-1], flush=True)
    with open(a.out, "w") as fh:
        json.dump(dict(args=vars(a), rows=rows), fh, indent=1)
    ray.shutdown()


if __name__ == "__main__":
    main()
