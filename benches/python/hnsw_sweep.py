"""HNSW recall against search beam at one n: builds the faiss HNSW index of the facility-location graph once and
searches the same 1000 seeded rows that ``erasus.select`` uses for ``metadata["knn_recall"]`` at several
``efSearch`` values, against float64 brute force (``erasus.selectors._ann.exact_neighbors``).

    python benches/python/hnsw_sweep.py --n 1000000 --ef 80 128 160 200 256

Prints, with the load average: the build time, then per ``efSearch`` the recall@K and the search time per query
row (CPU seconds of this process, so a loaded machine inflates wall time but less so CPU time). The end-to-end
search cost at that beam is ``n`` times the per-row cost; HNSW search is deterministic for a given index, so the
sample's recall equals the recall ``erasus.select`` reports for the same index.
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
    ap.add_argument("--m", type=int, default=32)
    ap.add_argument("--ef-construction", type=int, nargs="+", default=[64])
    ap.add_argument("--ef", type=int, nargs="+", default=[80, 128, 160, 200, 256])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--sample", type=int, default=1000)
    args = ap.parse_args()

    import faiss

    from erasus.selectors._ann import exact_neighbors

    faiss.omp_set_num_threads(args.threads)
    x = mixture(args.n, args.d, 50)
    rows = np.sort(np.random.default_rng(0).choice(args.n, size=min(args.sample, args.n), replace=False))
    t0 = time.perf_counter()
    exact = exact_neighbors(x[rows], x, args.neighbors)
    print(f"n={args.n} d={args.d} K={args.neighbors} M={args.m} threads={args.threads}: exact neighbours of "
          f"{rows.size} rows {time.perf_counter() - t0:.1f} s; {load()}", flush=True)
    for efc in args.ef_construction:
        index = faiss.IndexHNSWFlat(args.d, args.m)
        index.hnsw.efConstruction = efc
        t0, c0 = time.perf_counter(), time.process_time()
        index.add(x)
        print(f"  efConstruction {efc}: build {time.perf_counter() - t0:.1f} s wall, "
              f"{time.process_time() - c0:.1f} s CPU; {load()}", flush=True)
        for ef in args.ef:
            index.hnsw.efSearch = max(ef, args.neighbors)
            t0, c0 = time.perf_counter(), time.process_time()
            _, ids = index.search(x[rows], args.neighbors)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            recall = float(np.mean([np.intersect1d(a, e).size for a, e in zip(ids, exact)]) / args.neighbors)
            print(f"    efSearch {ef}: recall@{args.neighbors} {recall:.4f}; search {1e3 * wall / rows.size:.3f} ms "
                  f"wall, {1e3 * cpu / rows.size:.3f} ms CPU per row (x n = {cpu * args.n / rows.size:.0f} CPU s); "
                  f"{load()}", flush=True)
        del index
    return 0


if __name__ == "__main__":
    sys.exit(main())
