"""Facility location at n = 10^6 with the approximate (faiss IVF-Flat) kNN graph, and its price on a 10^5 subsample.

    python benches/python/facility_1e6.py                 # n = 1e6, d = 64, K = 50, k = 1e4 (target <= 10 min)
    python benches/python/facility_1e6.py --n 200000 --k 2000 --subsample 50000

Prints, with the load average and core count: the end-to-end wall time of ``erasus.select(..., neighbors=50)``
(which picks the IVF graph above ``graph_threshold``; k-means, calibration and search included) and the neighbour
recall the selection reports (measured against brute force on 1000 rows), then, on a seeded subsample, the kNN
objective of the approximate run (``--graph``, default ivf) and of the exact-graph run, both evaluated on the exact
graph (target: within 1%), and each run's CRAIG cost ``sum_i min_{j in S} ||x_i - x_j||``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np


def mixture(n: int, d: int, clusters: int, seed: int = 0) -> np.ndarray:
    """Gaussian mixture: centres N(0, 10^2 I), unit noise (the data of benches/harness.py)."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=10.0, size=(clusters, d))
    return (centers[rng.integers(clusters, size=n)] + rng.normal(size=(n, d))).astype(np.float32)


def knn_objective(ids: np.ndarray, dist: np.ndarray, picks: np.ndarray) -> float:
    """``sum_i max(0, max_{j in S cap N_K(i)} (D_max - D_ij))`` on the graph ``(ids, dist)`` (float64)."""
    chosen = np.zeros(ids.shape[0], bool)
    chosen[picks] = True
    top = float(dist.max())
    return float(np.where(chosen[ids], top - dist.astype(np.float64), 0.0).max(axis=1).sum())


def craig_cost(x: np.ndarray, picks: np.ndarray) -> float:
    import torch

    xt, y = torch.from_numpy(x), torch.from_numpy(x[picks])
    ysq = (y * y).sum(1)
    total = 0.0
    for s in range(0, x.shape[0], 4096):
        b = xt[s:s + 4096]
        d2 = ((b * b).sum(1)[:, None] + ysq[None] - 2 * b @ y.T).clamp_(min=0)
        total += float(d2.min(1).values.sqrt().double().sum())
    return total


def load() -> str:
    return f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())} on {os.cpu_count()} cores"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--d", type=int, default=64)
    ap.add_argument("--neighbors", type=int, default=50)
    ap.add_argument("--k", type=int, default=10_000)
    ap.add_argument("--subsample", type=int, default=100_000)
    ap.add_argument("--graph", choices=("ivf", "hnsw"), default="ivf", help="approximate graph of the subsample run")
    ap.add_argument("--skip-full", action="store_true", help="only the subsample comparison")
    ap.add_argument("--skip-subsample", action="store_true", help="only the full-size run")
    args = ap.parse_args()

    import erasus
    from erasus import _core

    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {load()}; erasus threads "
          f"{_core.get_num_threads()}", flush=True)
    x = mixture(args.n, args.d, 50)
    if not args.skip_full:
        t0, c0 = time.perf_counter(), time.process_time()
        sel = erasus.select(x, args.k, method="facility_location", neighbors=args.neighbors)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        print(f"n={args.n} d={args.d} K={args.neighbors} k={args.k}: end to end {wall:.1f} s, CPU {cpu:.1f} s "
              f"(graph={sel.metadata['graph']}, reported recall {sel.metadata.get('knn_recall')}, "
              f"nlist {sel.metadata.get('nlist')}, nprobe {sel.metadata.get('nprobe')}, "
              f"kNN objective {sel.objective:.1f}); {load()}", flush=True)

    if args.skip_subsample:
        return 0
    rng = np.random.default_rng(1)
    sub = np.ascontiguousarray(x[np.sort(rng.choice(args.n, size=args.subsample, replace=False))])
    k_sub = max(1, args.k * args.subsample // args.n)
    ids, dist = _core.knn_graph(sub, args.neighbors)
    runs = {}
    for graph in (args.graph, "exact"):
        t0, c0 = time.perf_counter(), time.process_time()
        s = erasus.select(sub, k_sub, method="facility_location", neighbors=args.neighbors, graph=graph)
        runs[graph] = (s, time.perf_counter() - t0, time.process_time() - c0)
    f = {g: knn_objective(ids.astype(np.int64), dist, runs[g][0].indices) for g in runs}
    g, meta = args.graph, runs[args.graph][0].metadata
    print(f"subsample n={args.subsample} k={k_sub}: recall@{args.neighbors} "
          f"{meta['knn_recall']:.4f} (reported, 1000 rows; nprobe {meta.get('nprobe')} of {meta.get('nlist')}); "
          f"exact-graph kNN objective of the picks: "
          f"{g} {f[g]:.2f} vs exact {f['exact']:.2f} ({100 * (f[g] / f['exact'] - 1):+.3f}%); CRAIG cost "
          f"{g} {craig_cost(sub, runs[g][0].indices):.1f} vs exact {craig_cost(sub, runs['exact'][0].indices):.1f}; "
          f"wall {g} {runs[g][1]:.1f} s, exact {runs['exact'][1]:.1f} s; CPU (all threads) {g} "
          f"{runs[g][2]:.1f} s, exact {runs['exact'][2]:.1f} s; {load()}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
