"""The independent reference for the distributed selection tests: both rounds run by hand with the
single-machine selector (``erasus.select``) on the same row ranges, candidates scored by float64 brute force."""

from __future__ import annotations

import numpy as np

import erasus


def blobs(n: int, d: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=4.0, size=(12, d))
    return (centers[rng.integers(0, 12, size=n)] + rng.normal(size=(n, d))).astype(np.float32)


def bounds(n: int, m: int) -> list[tuple[int, int]]:
    return [(p * n // m, (p + 1) * n // m) for p in range(m)]


def brute_score(x: np.ndarray, ids: np.ndarray, method: str, similarity: str = "craig", metric: str = "euclidean"):
    """(value, counts) of the candidate ``ids`` over all rows of ``x``, by explicit pairwise differences."""
    x64 = x.astype(np.float64)
    c = x64[ids]
    if method == "kcenter" and metric == "cosine" or method != "kcenter" and similarity == "cosine":
        def unit(a):
            nrm = np.linalg.norm(a, axis=1, keepdims=True)
            return np.where(nrm > 0, a / np.where(nrm > 0, nrm, 1), 0)
        cos = unit(x64) @ unit(c).T
        nearest = cos.argmax(axis=1)
        best = cos[np.arange(len(x)), nearest]
        value = (1 - best).max() if method == "kcenter" else np.maximum(best, 0).sum()
    else:
        dist = np.sqrt(((x64[:, None, :] - c[None, :, :]) ** 2).sum(axis=2))
        nearest = dist.argmin(axis=1)
        best = dist[np.arange(len(x)), nearest]
        if method == "kcenter":
            value = best.max()
        elif similarity == "rbf":
            value = np.exp(-best**2 / x.shape[1]).sum()
        else:
            value = best.sum()
    return float(value), np.bincount(nearest, minlength=len(ids))


def brute_submodular(x: np.ndarray, ids: np.ndarray, function: str, similarity: str = "rbf", lambda_: float = 0.5,
                     alpha: float = 0.1, concave: str = "sqrt", reg: float = 1.0) -> float:
    """f(S) over all rows of ``x`` from the definitions (float64, the full n x n kernel), as the Rust core's
    brute-force test oracle writes them."""
    x64 = x.astype(np.float64)
    if similarity == "cosine":
        nrm = np.linalg.norm(x64, axis=1, keepdims=True)
        u = np.where(nrm > 0, x64 / np.where(nrm > 0, nrm, 1), 0)
        s = u @ u.T
    else:
        s = np.exp(-((x64[:, None, :] - x64[None, :, :]) ** 2).sum(axis=2) / x.shape[1])
    S = np.asarray(ids)
    if function == "graph_cut":
        return float(s[:, S].sum() - lambda_ * s[np.ix_(S, S)].sum())
    if function == "saturated_coverage":
        return float(np.minimum(s[:, S].sum(axis=1), alpha * s.sum(axis=1)).sum())
    if function == "sum_redundancy":
        return float((len(x) - 1) * s.max() * len(S) - np.triu(s[np.ix_(S, S)], 1).sum())
    if function == "feature_based":
        mass = x64[S].sum(axis=0)
        return float((np.log1p(mass) if concave == "log" else np.sqrt(mass)).sum())
    if function == "log_determinant":
        return float(np.linalg.slogdet(s[np.ix_(S, S)] + reg * np.eye(len(S)))[1])
    raise ValueError(function)


def two_rounds_by_hand(x: np.ndarray, k: int, method: str, m: int, seed: int, score_locals: bool = True, **opts):
    """GreeDi / composable coreset written out with the single-machine selector: returns (ids, value, counts)."""
    local = []
    for lo, hi in bounds(len(x), m):
        sel = erasus.select(x[lo:hi], min(k, hi - lo), method, seed=seed, **opts)
        local.append(sel.indices + lo)
    union = np.concatenate(local)
    merged = union[erasus.select(x[union], k, method, seed=seed, **opts).indices]
    cands = [merged] + ([c for c in local if len(c) == k] if score_locals else [])
    if method == "submodular":
        params = {k: v for k, v in opts.items() if k not in ("optimizer",)}
        scored = [(brute_submodular(x, c, **params), None) for c in cands]
    else:
        scored = [brute_score(x, c, method, opts.get("similarity", "craig"), opts.get("metric", "euclidean"))
                  for c in cands]
    values = np.array([s[0] for s in scored])
    cost = method == "kcenter" or method != "submodular" and opts.get("similarity", "craig") == "craig"
    best = int(np.argmin(values)) if cost else int(np.argmax(values))
    return cands[best], values[best], scored[best][1]


def torch_rank_worker(rank: int, world: int, port: int, workdir: str, method: str, k: int, opts=None) -> None:
    """One gloo rank of the torch-backend test: its partition is its row range of ``blobs(600, 6, 1)``."""
    import os

    import torch.distributed as dist

    from erasus.distributed import select_distributed

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        x = blobs(600, 6, seed=1)
        lo, hi = bounds(len(x), world)[rank]
        part: object = x[lo:hi]
        if rank == 1:  # one rank reads its partition from a .npy path
            part = os.path.join(workdir, "rank1.npy")
            np.save(part, x[lo:hi])
        sel = select_distributed(part, k, method, backend="torch", seed=2, **(opts or {}))
        np.savez(os.path.join(workdir, f"{method}{rank}.npz"), indices=sel.indices, weights=sel.weights,
                 objective=sel.objective)
    finally:
        dist.destroy_process_group()
