"""Approximate kNN graphs for facility location at large n: faiss HNSW (Malkov & Yashunin, "Efficient and robust
approximate nearest neighbor search using Hierarchical Navigable Small World graphs", TPAMI 2020), built with
``faiss.IndexHNSWFlat`` (facebookresearch/faiss, ``faiss/IndexHNSW.cpp``), and its neighbour recall measured
against exact brute force (``faiss.knn``) on a seeded sample of rows.

faiss builds the HNSW graph on several threads, inserting points concurrently, so its links (and with them a
few of the approximate neighbours) can differ between runs; with one thread the graph is reproducible.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InvalidInputError, require

__all__ = ["HNSW_M", "HNSW_EF_CONSTRUCTION", "hnsw_knn_graph", "knn_recall"]

#: links per node (faiss' usual choice for d ~ 64; the issue's measurement used HNSW32)
HNSW_M = 32
#: beam width while building (faiss' default is 40; 80 buys recall on clustered data for ~1.5x build time)
HNSW_EF_CONSTRUCTION = 80
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
    as the exact graph does; a slot faiss could not fill holds ``-1``. ``ef_search`` (default ``2 K``) is the
    search beam; a wider beam raises recall and search time."""
    from tqdm.auto import tqdm

    n, d = x.shape
    if not 1 <= neighbors <= n:
        raise InvalidInputError(f"neighbors = {neighbors} must be in [1, n = {n}]")
    faiss = _faiss(threads)
    index = faiss.IndexHNSWFlat(d, m)
    index.hnsw.efConstruction = ef_construction
    index.add(x)
    index.hnsw.efSearch = max(int(ef_search or 2 * neighbors), neighbors)
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


def knn_recall(x: np.ndarray, ids: np.ndarray, *, sample: int = 1000, seed: int = 0, threads: int = 1) -> float:
    """Mean ``|approximate ∩ exact| / K`` of the neighbour lists ``ids`` over ``sample`` seeded rows, the exact
    lists from brute force (``faiss.knn``, squared L2 on BLAS)."""
    n, neighbors = ids.shape
    faiss = _faiss(threads)
    rows = np.sort(np.random.default_rng(seed).choice(n, size=min(sample, n), replace=False))
    _, exact = faiss.knn(np.ascontiguousarray(x[rows]), x, neighbors)
    hits = [np.intersect1d(ids[r], e, assume_unique=False).size for r, e in zip(rows, exact)]
    return float(np.mean(hits) / neighbors)
