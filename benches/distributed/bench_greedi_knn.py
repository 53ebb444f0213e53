"""GreeDi facility location in kNN mode at n = 10^6 (benches/distributed/RESULTS.md): every Ray partition builds
the HNSW kNN graph of its own rows and runs the kNN lazy greedy on it; the reference is the single-machine kNN
greedy on the HNSW graph of all n rows. Both selections are scored on the exact objective over all rows
(``evaluate_candidates``: CRAIG's cost ``sum_i min_{j in S} ||x_i - x_j||`` in float64), which no kNN graph
approximates.

    .venv/bin/python benches/distributed/bench_greedi_knn.py --n 1000000 --m 8 4 2 16

Resumable: each finished configuration is appended to ``--out`` and skipped on the next start. Every timing
is stored with the 1-minute load average taken just before it.
"""

from __future__ import annotations

import argparse
import json
import os

import ray

import erasus
from erasus.distributed import select_distributed
from erasus.distributed.greedi import evaluate_candidates

# the same mixture and timer as the exact-mode bench, so both RESULTS tables measure one workload
from bench_greedi import blobs, timed  # the script's own folder is on sys.path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--d", type=int, default=16)
    ap.add_argument("--k", type=int, default=1000)
    ap.add_argument("--neighbors", type=int, default=20)
    ap.add_argument("--m", type=int, nargs="+", default=[8, 4, 2, 16])
    ap.add_argument("--out", default="benches/distributed/results_knn.json")
    a = ap.parse_args()
    done = json.load(open(a.out)) if os.path.exists(a.out) else {"args": vars(a), "rows": []}
    have = {(r["n"], r["m"]) for r in done["rows"]}

    def save(row: dict) -> None:
        done["rows"].append(row)
        print({k: v for k, v in row.items() if k != "indices"}, flush=True)
        with open(a.out + ".tmp", "w") as fh:
            json.dump(done, fh, indent=1)
        os.replace(a.out + ".tmp", a.out)

    x = blobs(a.n, a.d, 2)
    opts = dict(neighbors=a.neighbors, graph="hnsw")
    if (a.n, 1) not in have:
        single, t, load = timed(lambda: erasus.select(x, a.k, "facility_location", seed=0, **opts))
        (cost,), _ = evaluate_candidates(x, [x[single.indices]], "facility_location", options={})
        save(dict(n=a.n, m=1, seconds=t, load=load, cost=float(cost), knn_objective=single.objective,
                  knn_recall=single.metadata.get("knn_recall"), indices=single.indices.tolist()))
    base = next(r for r in done["rows"] if r["n"] == a.n and r["m"] == 1)
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    for m in a.m:
        if (a.n, m) in have:
            continue
        # merged-only scoring: the m + 1 candidate scoring of best-of would cost (m + 1) n k d float64 ops
        sel, t, load = timed(lambda: select_distributed(x, a.k, "facility_location", partitions=m, seed=0,
                                                        score_locals=False, progress=False, **opts))
        save(dict(n=a.n, m=m, seconds=t, load=load, cost=sel.objective, cost_ratio=sel.objective / base["cost"],
                  overlap=len(set(sel.indices.tolist()) & set(base["indices"])) / a.k))
    ray.shutdown()


if __name__ == "__main__":
    main()
