"""Approximate kNN graphs for facility location at large n: faiss HNSW (Malkov & Yashunin, "Efficient and robust
approximate nearest neighbor search using Hierarchical Navigable Small World graphs", TPAMI 2020), built with
``faiss.IndexHNSWFlat`` (facebookresearch/faiss, ``faiss/IndexHNSW.cpp``), and its neighbour recall measured
against exact brute force on a seeded sample of rows.

faiss builds the HNSW graph on several threads, inserting points concurrently, so its links (and with them a
few of the approximate neighbours) can differ between runs; with one thread the graph is reproducible.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import InvalidInputError, require

__all__ = ["HNSW_M", "HNSW_EF_CONSTRUCTION", "exact_neighbors", "hnsw_knn_graph", "knn_recall"]

#: links per node (faiss' usual choice for d ~ 64; the issue's measurement used HNSW32)
HNSW_M = 32
#: beam width while building. On the 50-cluster mixture at n = 1e5, d = 64, K = 50 (2 loaded cores) faiss'
#: default 40 with a search beam of 64 gave recall 0.957 (build 39 s, search 109 s) and 80 / 100 gave 0.994
#: (80 s, 147 s); 64 / 1.6 K sits between the two
HNSW_EF_CONSTRUCTION = 64
#: default search beam as a multiple of K. At n = 10^6 (same mixture, efConstruction 64, one index searched at
#: several beams by benches/python/hnsw_sweep.py) recall@50 was 0.894 at 1.6 K (as in the idle end-to-end run),
#: 0.944 at 2.56 K and 0.961 at 3.2 K: 3.2 K is the smallest measured beam that reaches the issue's 0.95
HNSW_EF_SEARCH_PER_NEIGHBOR = 3.2
#: rows searched per call, so the progress bar moves and the result buffers stay small
_SEARCH_ROWS = 1 << 15


def _faiss(threads: int) -> Any:
    faiss = require("faiss", "select", purpose="the approximate kNN graph of facility location (graph='hnsw')")
    faiss.omp_set_num_threads(int(threads))
    return faiss


def hnsw_knn_graph(x: np.ndarray, neighbors: int, *, ef_search: int | None = None, threads: int = 1,
                   m: int = HNSW_M, ef_construction: int = HNSW_EF_CONSTRUCTION) -> tuple[np.ndarray, np.ndarray]:
    """Approximate ``neighbors``-nearest-neighbour graph of the rows of ``x`` (float32, C-contiguous):
    ``(ids (n, K) int64, Euclidean distances (n, K) float32)``. Every row lists itself (distance exactly 0),
    as the exact graph does; a slot faiss could not fill holds ``-1``. ``ef_search`` (default ``3.2 K``) is the
    search beam; a wider beam raises recall and search time."""
    from tqdm.auto import tqdm

    n, d = x.shape
    if not 1 <= neighbors <= n:
        raise InvalidInputError(f"neighbors = {neighbors} must be in [1, n = {n}]")
    faiss = _faiss(threads)
    index = faiss.IndexHNSWFlat(d, m)
    index.hnsw.efConstruction = ef_construction
    index.add(x)
    index.hnsw.efSearch = max(int(ef_search or math.ceil(HNSW_EF_SEARCH_PER_NEIGHBOR * neighbors)), neighbors)
    ids = np.empty((n, neighbors), dtype=np.int64)
    sq = np.empty((n, neighbors), dtype=np.float32)
    for s in tqdm(range(0, n, _SEARCH_ROWS), desc="HNSW search", leave=False, disable=None if n > 1 << 18 else True):
        sq[s:s + _SEARCH_ROWS], ids[s:s + _SEARCH_ROWS] = index.search(x[s:s + _SEARCH_ROWS], neighbors)
    del index
    own = np.arange(n)[:, None]
    is_self = ids == own
    missing = ~is_self.any(axis=1)
    # A row whose search missed itself gets itself in the last slot: facility location needs s_ii.
    ids[missing, -1] = np.flatnonzero(missing)
    sq[missing, -1] = 0.0
    sq[ids == own] = 0.0
    dist = np.sqrt(np.maximum(sq, 0.0), dtype=np.float32)
    dist[ids < 0] = 0.0
    return ids, dist


def exact_neighbors(queries: np.ndarray, x: np.ndarray, neighbors: int, *, block_rows: int = 1 << 16) -> np.ndarray:
    """Exact ``neighbors`` nearest rows of ``x`` for each query row (brute force, float64 squared distances so
    that float32 cancellation cannot reorder near neighbours), streamed over row blocks of ``x`` in torch."""
    import torch

    q = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float64))
    qsq = (q * q).sum(dim=1, keepdim=True)
    best_d = torch.full((q.shape[0], 0), float("inf"), dtype=torch.float64)
    best_i = torch.zeros((q.shape[0], 0), dtype=torch.int64)
    for s in range(0, x.shape[0], block_rows):
        b = torch.from_numpy(np.ascontiguousarray(x[s:s + block_rows], dtype=np.float64))
        d2 = qsq + (b * b).sum(dim=1)[None, :] - 2.0 * (q @ b.T)
        take = min(neighbors, b.shape[0])
        v, i = torch.topk(d2, take, dim=1, largest=False)
        best_d = torch.cat([best_d, v], dim=1)
        best_i = torch.cat([best_i, i + s], dim=1)
        if best_d.shape[1] > neighbors:
            best_d, keep = torch.topk(best_d, neighbors, dim=1, largest=False)
            best_i = torch.gather(best_i, 1, keep)
    return best_i.numpy()


def knn_recall(x: np.ndarray, ids: np.ndarray, *, sample: int = 1000, seed: int = 0) -> float:
    """Mean ``|approximate ∩ exact| / K`` of the neighbour lists ``ids`` over ``sample`` seeded rows, the exact
    lists by brute force (:func:`exact_neighbors`)."""
    n, neighbors = ids.shape
    rows = np.sort(np.random.default_rng(seed).choice(n, size=min(sample, n), replace=False))
    exact = exact_neighbors(x[rows], x, neighbors)
    hits = [np.intersect1d(ids[r], e).size for r, e in zip(rows, exact)]
    return float(np.mean(hits) / neighbors)
