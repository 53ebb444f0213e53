"""IVF-Flat recall against probed cells at one n: builds the faiss IVF-Flat index of the facility-location graph
once (``erasus.selectors._ann.ivf_index``, the one ``erasus.select`` builds) and searches the same 1000 seeded rows
that ``erasus.select`` uses for ``metadata["knn_recall"]`` at several ``nprobe`` values, against float64 brute force.

    python benches/python/ivf_sweep.py --n 1000000 --nprobe 32 48 64 96

Prints, with the load average: the k-means + add cost, then per ``nprobe`` the recall@K and the search cost per
query row (CPU seconds of this process, so a loaded machine inflates wall time but less so CPU time). The
end-to-end search cost at that ``nprobe`` is ``n`` times the per-row cost; ``erasus.select`` picks the smallest
``nprobe`` whose recall on 500 other seeded rows reaches ``recall_target`` (0.96).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from facility_1e6 import load, mixture  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--d", type=int, default=64)
    ap.add_argument("--neighbors", type=int, default=50)
    ap.add_argument("--list-size", type=int, default=256)
    ap.add_argument("--nprobe", type=int, nargs="+", default=[16, 32, 48, 64, 96])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--sample", type=int, default=1000)
    args = ap.parse_args()

    from erasus.selectors._ann import exact_neighbors, ivf_index, recall_rows

    x = mixture(args.n, args.d, 50)
    rows = recall_rows(args.n, args.sample, 0)
    t0 = time.perf_counter()
    exact = exact_neighbors(x[rows], x, args.neighbors)
    print(f"n={args.n} d={args.d} K={args.neighbors} list size {args.list_size} threads={args.threads}: exact "
          f"neighbours of {rows.size} rows {time.perf_counter() - t0:.1f} s; {load()}", flush=True)
    t0, c0 = time.perf_counter(), time.process_time()
    index = ivf_index(x, threads=args.threads, list_size=args.list_size)
    print(f"  nlist {index.nlist}: k-means + add {time.perf_counter() - t0:.1f} s wall, "
          f"{time.process_time() - c0:.1f} s CPU; {load()}", flush=True)
    for p in args.nprobe:
        index.nprobe = p
        t0, c0 = time.perf_counter(), time.process_time()
        _, ids = index.search(x[rows], args.neighbors)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        recall = float(np.mean([np.intersect1d(a, e).size for a, e in zip(ids, exact)]) / args.neighbors)
        print(f"    nprobe {p}: recall@{args.neighbors} {recall:.4f}; search {1e3 * wall / rows.size:.3f} ms wall, "
              f"{1e3 * cpu / rows.size:.3f} ms CPU per row (x n = {cpu * args.n / rows.size:.0f} CPU s); {load()}",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
