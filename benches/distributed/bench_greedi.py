"""Scale measurements for benches/distributed/RESULTS.md: GreeDi (facility location) and composable k-center
coresets with m = 2, 4, 8, 16 Ray partitions against the single-machine greedy on the same data.

    .venv/bin/python benches/distributed/bench_greedi.py --n-fl 20000 --n-kc 1000000 --out results.json

Every timing is printed with the load average (``os.getloadavg``) taken right before it.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import ray

import erasus
from erasus.distributed import select_distributed
from erasus.distributed.greedi import evaluate_candidates


def blobs(n: int, d: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=4.0, size=(64, d))
    return (centers[rng.integers(0, 64, size=n)] + rng.normal(size=(n, d))).astype(np.float32)


def timed(fn):
    load = os.getloadavg()[0]
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t, load


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-fl", type=int, default=20000)
    ap.add_argument("--n-kc", type=int, default=1_000_000)
    ap.add_argument("--d", type=int, default=16)
    ap.add_argument("--k", type=int, default=50)
    ap.add_argument("--out", default="benches/distributed/results.json")
    a = ap.parse_args()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    rows = []

    x = blobs(a.n_fl, a.d, 0)
    single, t, load = timed(lambda: erasus.select(x, a.k, "facility_location", seed=0))
    cost_single = float(evaluate_candidates(x, [x[single.indices]], "facility_location", options={})[0][0])
    dmax = (single.objective + cost_single) / a.n_fl  # single-machine f = n D_max - cost
    rows.append(dict(method="facility_location", n=a.n_fl, m=1, seconds=t, load=load, f_ratio=1.0, cost_ratio=1.0))
    print(rows[-1], flush=True)
    for m in (2, 4, 8, 16):
        sel, t, load = timed(lambda: select_distributed(x, a.k, "facility_location", partitions=m, seed=0,
                                                        progress=False))
        _, tp, loadp = timed(lambda: erasus.select(x[: a.n_fl // m], a.k, "facility_location", seed=0))
        f = a.n_fl * dmax - sel.objective
        rows.append(dict(method="facility_location", n=a.n_fl, m=m, seconds=t, load=load, f_ratio=f / single.objective,
                         cost_ratio=sel.objective / cost_single, partition_rows=a.n_fl // m,
                         partition_seconds=tp, partition_load=loadp, winner=sel.metadata["winner"]))
        print(rows[-1], flush=True)

    x = blobs(a.n_kc, a.d, 1)
    single, t, load = timed(lambda: erasus.select(x, a.k, "kcenter", seed=0))
    rows.append(dict(method="kcenter", n=a.n_kc, m=1, seconds=t, load=load, radius=single.objective, radius_ratio=1.0))
    print(rows[-1], flush=True)
    for m in (2, 4, 8, 16):
        sel, t, load = timed(lambda: select_distributed(x, a.k, "kcenter", partitions=m, seed=0, progress=False))
        _, tp, loadp = timed(lambda: erasus.select(x[: a.n_kc // m], a.k, "kcenter", seed=0))
        rows.append(dict(method="kcenter", n=a.n_kc, m=m, seconds=t, load=load, radius=sel.objective,
                         radius_ratio=sel.objective / single.objective, partition_rows=a.n_kc // m,
                         partition_seconds=tp, partition_load=loadp, winner=sel.metadata["winner"]))
        print(rows[-1], flush=True)
        sel, t, load = timed(lambda: select_distributed(x, a.k, "kcenter", partitions=m, seed=0, score_locals=False,
                                                        progress=False))
        rows.append(dict(method="kcenter merged-only", n=a.n_kc, m=m, seconds=t, load=load, radius=sel.objective,
                         radius_ratio=sel.objective / single.objective))
        print(rows[-1], flush=True)
    with open(a.out, "w") as fh:
        json.dump(dict(args=vars(a), threads=erasus.get_num_threads(), rows=rows), fh, indent=1)
    ray.shutdown()


if __name__ == "__main__":
    main()
