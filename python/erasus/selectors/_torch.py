"""The torch twin of the Rust geometric selectors: k-center, herding, k-means and dense / kNN facility location
written in torch ops, so that they run where the features live (a CUDA tensor is never copied to the host) and
over row blocks of an ``np.memmap`` larger than RAM.

Each function takes a :class:`Rows` source and returns the ``(indices, weights, gains, objective)`` tuple of the
matching ``erasus._core`` call, with the same semantics (seeded draws come from the Rust stream through
``erasus._core.seeding_draws``; ties go to the smaller row / the earlier pick). The arithmetic follows the Rust
core where it decides a pick (direct ``sum (x - c)^2`` in float32 for k-center, herding and the k-means seeding;
``|x|^2 + |y|^2 - 2 x.y`` tiles for facility location), so the picks are the Rust picks up to float ties: two
candidates whose scores differ by a rounding error may come out in the other order. k-means assigns rows in
float64 (``|x|^2 + |c|^2 - 2 x.c``), which agrees with the Rust float32 assignment except on such near ties.

The facility-location greedy keeps every candidate's gain up to date (float64) instead of re-evaluating it:
committing ``j`` raises ``cur_i`` only for the points ``j`` covers better, and only the gains of those points'
candidates change. It picks exactly what the naive greedy (and so Minoux' lazy greedy) picks, up to float ties.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import _core
from ..errors import InvalidInputError, MemoryBudgetError, NonFiniteError

__all__ = [
    "Rows",
    "as_rows",
    "is_cuda_tensor",
    "kcenter",
    "herding",
    "kmeans",
    "knn_graph",
    "facility_dense",
    "facility_knn",
    "SIMILARITIES",
    "BACKENDS",
    "check_backend",
    "use_torch",
]

SIMILARITIES = ("craig", "cosine", "rbf")
#: elements per temporary block (float32: 64 MiB), so no pass allocates more than a block beside the data
_BLOCK_ELEMENTS = 1 << 24
CoreResult = tuple[np.ndarray, np.ndarray, np.ndarray, float]


def cpu_device() -> Any:
    import torch

    return torch.device("cpu")


def is_cuda_tensor(x: Any) -> bool:
    """True for a torch tensor on a CUDA device (checked without importing torch)."""
    device = getattr(x, "device", None)
    return hasattr(x, "detach") and getattr(device, "type", None) == "cuda"


def _progress(total: int, work: float, desc: str) -> Any:
    """A tqdm bar over ``total`` steps, shown (on a terminal) only when ``work`` element-ops make the loop long."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=False, disable=None if work > 5e10 else True)


def _from_numpy(a: np.ndarray) -> Any:
    """A zero-copy tensor view of ``a``; a read-only memmap is fine because the selectors never write to features."""
    import torch

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(a)


@dataclass
class Rows:
    """An ``(n, d)`` matrix read in row blocks as float32 torch tensors on one device.

    ``source`` is a torch tensor (blocks are views; any device) or a numpy array / ``np.memmap`` (blocks are
    read, and converted to float32, one at a time, so a memmap larger than RAM is streamed).
    """

    source: Any
    n: int
    d: int
    block_rows: int
    device: Any

    def blocks(self) -> Iterator[tuple[int, Any]]:
        """``(first row, block)`` pairs covering the rows in order."""
        for start in range(0, self.n, self.block_rows):
            yield start, self.block(start, min(start + self.block_rows, self.n))

    def block(self, start: int, stop: int) -> Any:
        part = self.source[start:stop]
        if isinstance(part, np.ndarray):
            return _from_numpy(np.ascontiguousarray(part, dtype=np.float32))
        return part.float()

    def take(self, rows: Any) -> Any:
        """The rows ``rows`` (a sequence of ints) as an ``(m, d)`` float32 tensor."""
        import torch

        idx = np.asarray(rows, dtype=np.int64)
        if isinstance(self.source, np.ndarray):
            return _from_numpy(np.ascontiguousarray(self.source[idx], dtype=np.float32))
        return self.source[torch.as_tensor(idx, device=self.device)].float()

    def whole(self) -> Any:
        """All rows as one float32 tensor (used by the facility-location paths, which hold n x K or n x n anyway)."""
        if isinstance(self.source, np.ndarray):
            return _from_numpy(np.ascontiguousarray(self.source, dtype=np.float32))
        return self.source.float().contiguous()


BACKENDS = ("auto", "rust", "torch")


def check_backend(backend: Any, block_rows: Any) -> None:
    """Validates the ``backend`` / ``block_rows`` options of the selectors that have a torch twin."""
    if backend not in BACKENDS:
        raise InvalidInputError(f"unknown backend {backend!r}; expected one of {BACKENDS}")
    if block_rows is not None and (isinstance(block_rows, bool) or not isinstance(block_rows, (int, np.integer))
                                   or block_rows < 1):
        raise InvalidInputError(f"block_rows must be a positive integer (rows per streamed block) or None, got {block_rows!r}")


def _physical_memory() -> int:
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 0


def use_torch(x: Any, *, backend: str, block_rows: int | None) -> bool:
    """Whether ``x`` goes through the torch twin: always for ``backend="torch"``, never for ``"rust"``; under
    ``"auto"`` for a CUDA tensor (selected where it lives), when ``block_rows`` asks for streaming, and for an
    ``np.memmap`` larger than half the physical memory (streamed in row blocks instead of paged in whole)."""
    if backend != "auto":
        return backend == "torch"
    if is_cuda_tensor(x) or block_rows is not None:
        return True
    memory = _physical_memory()
    return isinstance(x, np.memmap) and memory > 0 and x.nbytes > memory // 2


def as_rows(x: Any, *, block_rows: int | None = None) -> Rows:
    """Wrap a torch tensor or numpy array as :class:`Rows` after the shared shape check and a finiteness check.

    The finiteness check is one pass over the blocks on the data's own device, before any selection work.
    """
    import torch

    from ..errors import ErasusTypeError
    from ..selection import check_shape

    if hasattr(x, "detach"):
        x = x.detach()
        if x.is_complex() or x.dtype == torch.bool:
            raise ErasusTypeError(f"features must be a real numeric tensor, got {x.dtype}")
        device = x.device
    else:
        if not isinstance(x, np.ndarray):
            try:
                x = np.asarray(x)
            except Exception as exc:
                raise ErasusTypeError(f"features must be array-like (numpy array or torch tensor), got "
                                      f"{type(x).__name__}") from exc
        if x.dtype.kind not in "fiu":
            raise ErasusTypeError(f"features must be numeric, got dtype {x.dtype}")
        device = torch.device("cpu")
    check_shape(tuple(x.shape))
    check_backend("torch", block_rows)
    n, d = int(x.shape[0]), int(x.shape[1])
    rows = Rows(x, n, d, max(1, _BLOCK_ELEMENTS // d) if block_rows is None else int(block_rows), device)
    for start, b in rows.blocks():
        finite = torch.isfinite(b).all(dim=1)
        if not bool(finite.all()):
            bad = start + int(torch.nonzero(~finite)[0, 0])
            raise NonFiniteError(f"features contain NaN or infinity (first in row {bad}); expected finite values")
    return rows


def _index_tensor(values: Any, device: Any) -> Any:
    import torch

    return torch.as_tensor(np.asarray(values, dtype=np.int64), device=device)


def _sq_dist_to(b: Any, c: Any) -> Any:
    """``sum_d (b - c)^2`` for each row of ``b`` in float32, computed directly (no ``|b|^2 - 2 b.c`` cancellation)."""
    diff = b - c
    return (diff * diff).sum(dim=1)


# --------------------------------------------------------------------------------------------- k-center


def kcenter(rows: Rows, k: int, *, metric: str = "euclidean", initial: np.ndarray | None = None,
            seed: int = 0) -> CoreResult:
    """Greedy k-center (Gonzalez 1985; Sener & Savarese, ICLR 2018): ``u = argmax_i min_{c in S} d(x_i, c)``.

    The torch twin of ``erasus._core.kcenter``: one pass over the blocks per pick, no pruning. ``initial`` rows
    are already selected and not returned; without them the seeded Rust draw starts the greedy.
    """
    import torch

    n, device = rows.n, rows.device
    if metric not in ("euclidean", "cosine"):
        raise InvalidInputError(f"unknown metric {metric!r}; expected 'euclidean' or 'cosine'")
    starts: list[int]
    if initial is None:
        first, _ = _core.seeding_draws(seed, n, 0)
        starts = []
    else:
        starts = list(dict.fromkeys(int(i) for i in initial))
        if k > n - len(starts):
            raise InvalidInputError(f"k = {k} new centers requested but only {n - len(starts)} of n = {n} samples are "
                                    f"not in initial; expected k <= {n - len(starts)}")
    norms = (torch.cat([b.mul(b).sum(dim=1).sqrt() for _, b in rows.blocks()]) if metric == "cosine"
             else torch.empty(0, device=device))
    min_dist = torch.full((n,), float("inf"), dtype=torch.float32, device=device)

    def add(c: int) -> tuple[float, int]:
        center = rows.take([c])[0]
        for start, b in rows.blocks():
            stop = start + b.shape[0]
            if metric == "euclidean":
                dist = _sq_dist_to(b, center)
            else:
                nb, nc = norms[start:stop], norms[c]
                cos = (b @ center) / (nb * nc)
                dist = torch.where((nb == 0) | (nc == 0), torch.ones_like(cos), (1.0 - cos).clamp(min=0.0))
            torch.minimum(min_dist[start:stop], dist, out=min_dist[start:stop])
        min_dist[c] = float("-inf")
        far = int(torch.argmax(min_dist))
        return float(min_dist[far]), far

    def reported(v: float) -> float:
        return float(np.sqrt(v)) if metric == "euclidean" else v

    indices: list[int] = []
    gains: list[float] = []
    far = (float("-inf"), -1)
    for c in starts:
        far = add(c)
    bar = _progress(k, float(k) * n * rows.d, "k-center")
    if initial is None:
        indices.append(first)
        gains.append(float("inf"))
        far = add(first)
        bar.update(1)
    while len(indices) < k:
        gains.append(reported(far[0]))
        indices.append(far[1])
        far = add(far[1])
        bar.update(1)
    bar.close()
    objective = 0.0 if far[0] == float("-inf") else reported(far[0])
    return (np.asarray(indices, dtype=np.int64), np.ones(k, dtype=np.float32), np.asarray(gains, dtype=np.float64),
            objective)


# --------------------------------------------------------------------------------------------- herding


def _column_mean(rows: Rows) -> Any:
    import torch

    total = torch.zeros(rows.d, dtype=torch.float64, device=rows.device)
    for _, b in rows.blocks():
        total += b.double().sum(dim=0)
    return total / rows.n


def herding(rows: Rows, k: int) -> CoreResult:
    """Herding with a linear kernel (Welling, ICML 2009; Chen, Welling & Smola, UAI 2010): step ``t`` adds
    ``argmin_{x not in S} ||x - r_t||`` with ``r_t = (t + 1) mean(X) - sum_S`` (the torch twin of
    ``erasus._core.herding``; mean and running sum in float64, ``r_t`` rounded to float32)."""
    import torch

    n, device = rows.n, rows.device
    mean = _column_mean(rows)
    total = torch.zeros(rows.d, dtype=torch.float64, device=device)
    selected = torch.zeros(n, dtype=torch.bool, device=device)
    indices: list[int] = []
    gains: list[float] = []
    bar = _progress(k, float(k) * n * rows.d, "herding")
    for t in range(k):
        scale = float(t + 1)
        target = (scale * mean - total).float()
        best_value, best_row = float("inf"), -1
        for start, b in rows.blocks():
            dist = _sq_dist_to(b, target).masked_fill_(selected[start:start + b.shape[0]], float("inf"))
            j = int(torch.argmin(dist))
            value = float(dist[j])
            if value < best_value or best_row < 0:
                best_value, best_row = value, start + j
        selected[best_row] = True
        indices.append(best_row)
        total += rows.take([best_row])[0].double()
        gains.append(float(torch.linalg.vector_norm(total / scale - mean)))
        bar.update(1)
    bar.close()
    return (np.asarray(indices, dtype=np.int64), np.ones(k, dtype=np.float32), np.asarray(gains, dtype=np.float64),
            gains[-1])


# --------------------------------------------------------------------------------------------- k-means


def _assign(rows: Rows, centroids: Any) -> tuple[Any, float]:
    """Nearest centroid of every row (float64 ``|x|^2 + |c|^2 - 2 x.c``, ties to the smaller centroid) and the inertia."""
    import torch

    c64 = centroids.double()
    csq = (c64 * c64).sum(dim=1)
    labels = torch.empty(rows.n, dtype=torch.int64, device=rows.device)
    inertia = 0.0
    step = max(1, _BLOCK_ELEMENTS // (2 * max(centroids.shape[0], rows.d)))
    for start, b in rows.blocks():
        for s in range(0, b.shape[0], step):
            part = b[s:s + step].double()
            d2 = ((part * part).sum(dim=1, keepdim=True) + csq - 2.0 * part @ c64.T).clamp_(min=0.0)
            best, arg = torch.min(d2, dim=1)
            labels[start + s:start + s + part.shape[0]] = arg
            inertia += float(best.sum())
    return labels, inertia


def _nearest_untaken(rows: Rows, center: Any, taken: Any) -> int:
    import torch

    best_value, best_row = float("inf"), -1
    for start, b in rows.blocks():
        dist = _sq_dist_to(b, center).masked_fill_(taken[start:start + b.shape[0]], float("inf"))
        j = int(torch.argmin(dist))
        value = float(dist[j])
        if value < best_value or best_row < 0:
            best_value, best_row = value, start + j
    return best_row


def kmeans(rows: Rows, k: int, *, seed: int = 0, max_iter: int = 100, tol: float = 1e-4) -> CoreResult:
    """k-means++ seeding (Arthur & Vassilvitskii, SODA 2007) + Lloyd iterations, then the nearest untaken row of
    each centroid; the torch twin of ``erasus._core.kmeans`` (same seeded draws, f64 centroid sums, an empty
    cluster keeps its centroid, stop when ``(prev - cur) <= tol * prev``)."""
    import torch

    n, d, device = rows.n, rows.d, rows.device
    first, uniforms = _core.seeding_draws(seed, n, k - 1)
    seeds = [int(first)]
    chosen = torch.zeros(n, dtype=torch.bool, device=device)
    chosen[first] = True
    min_dist = torch.full((n,), float("inf"), dtype=torch.float32, device=device)
    bar = _progress(k, float(k) * n * d, "k-means++")
    while len(seeds) < k:
        center = rows.take([seeds[-1]])[0]
        for start, b in rows.blocks():
            stop = start + b.shape[0]
            torch.minimum(min_dist[start:stop], _sq_dist_to(b, center), out=min_dist[start:stop])
        cumulative = torch.cumsum(min_dist.double(), dim=0)
        total = float(cumulative[-1])
        if total > 0.0:
            u = torch.tensor([float(uniforms[len(seeds) - 1]) * total], dtype=torch.float64, device=device)
            nxt = int(torch.searchsorted(cumulative, u, right=True)[0])
            if nxt >= n:  # rounding left u past the last cumulative sum: the last positive row
                nxt = int(torch.nonzero(min_dist > 0)[-1, 0])
        else:  # every row coincides with a seed
            nxt = int(torch.nonzero(~chosen)[0, 0])
        seeds.append(nxt)
        chosen[nxt] = True
        bar.update(1)
    bar.close()
    centroids = rows.take(seeds)
    labels, inertia = _assign(rows, centroids)
    for _ in range(max_iter):
        sums = torch.zeros((k, d), dtype=torch.float64, device=device)
        for start, b in rows.blocks():
            sums.index_add_(0, labels[start:start + b.shape[0]], b.double())
        counts = torch.bincount(labels, minlength=k)
        filled = counts > 0
        centroids = torch.where(filled[:, None], (sums / counts.clamp(min=1)[:, None].double()).float(), centroids)
        previous = inertia
        labels, inertia = _assign(rows, centroids)
        if previous - inertia <= tol * previous:
            break
    sizes = torch.bincount(labels, minlength=k).float().cpu().numpy()
    taken = torch.zeros(n, dtype=torch.bool, device=device)
    indices = []
    for c in range(k):
        row = _nearest_untaken(rows, centroids[c], taken)
        taken[row] = True
        indices.append(row)
    return np.asarray(indices, dtype=np.int64), sizes.astype(np.float32), np.zeros(0, dtype=np.float64), inertia


# --------------------------------------------------------------------------------------------- facility location


def _gamma(similarity: str, gamma: float | None, d: int) -> float:
    """Checks ``similarity`` and returns the rbf gamma (default ``1/d``; unused by the other similarities)."""
    if similarity not in SIMILARITIES:
        raise InvalidInputError(f"unknown similarity {similarity!r}; expected one of {SIMILARITIES}")
    return 1.0 / d if gamma is None else float(gamma)


def _sq_norms(x: Any) -> Any:
    """Squared row norms accumulated in float64, as the Rust core's tiles take them, in row blocks."""
    import torch

    step = max(1, _BLOCK_ELEMENTS // (2 * x.shape[1]))
    return torch.cat([x[s:s + step].double().pow(2).sum(dim=1).float() for s in range(0, x.shape[0], step)])


def _sq_dist_tile(a: Any, a_sq: Any, b: Any, b_sq: Any) -> Any:
    return (a_sq[:, None] + b_sq[None, :] - 2.0 * (a @ b.T)).clamp_(min=0.0)


def _unit_rows(x: Any) -> tuple[Any, Any]:
    """Rows scaled to unit norm (zero rows stay zero) and a mask of the zero rows."""
    norms = _sq_norms(x).sqrt()
    zero = norms == 0
    return x / norms.masked_fill(zero, 1.0)[:, None], zero


def dense_kernel(x: Any, similarity: str, gamma: float | None, max_dense_bytes: int) -> Any:
    """The ``n x n`` float32 similarity ``K[i, j] = s(x_i, x_j)`` of ``erasus._core.facility_location``'s dense mode:
    craig ``D_max - D`` (``D_max`` over all pairs, ``D_ii = 0``), cosine (1 on the diagonal, 0 for a zero row) or
    rbf ``exp(-gamma D^2)``."""
    import torch

    n, d = x.shape
    needed = 4 * n * n
    if needed > max_dense_bytes:
        raise MemoryBudgetError(
            f"the dense {n} x {n} float32 similarity matrix needs {needed} bytes, above max_dense_bytes = "
            f"{max_dense_bytes}; use the sparse mode with neighbors=K (e.g. neighbors=50), or raise max_dense_bytes")
    g = _gamma(similarity, gamma, d)
    sq = _sq_norms(x)
    kernel = torch.empty((n, n), dtype=torch.float32, device=x.device)
    step = max(1, _BLOCK_ELEMENTS // n)
    for s in range(0, n, step):
        tile = kernel[s:s + step]
        rows = torch.arange(s, s + tile.shape[0], device=x.device)
        if similarity == "cosine":
            den = (sq[s:s + step, None] * sq[None, :]).sqrt_()
            torch.matmul(x[s:s + step], x.T, out=tile)
            tile.copy_(torch.where(den > 0, tile / den.masked_fill(den == 0, 1.0), torch.zeros_like(tile)))
            tile[rows - s, rows] = (sq[rows] > 0).float()
        else:
            tile.copy_(_sq_dist_tile(x[s:s + step], sq[s:s + step], x, sq))
            tile[rows - s, rows] = 0.0
            if similarity == "craig":
                tile.sqrt_()
            else:
                tile.mul_(-g).exp_()
    if similarity == "craig":
        top = kernel.max()
        torch.sub(top, kernel, out=kernel)
    return kernel


def facility_dense(rows: Rows, k: int, *, similarity: str = "craig", gamma: float | None = None,
                   max_dense_bytes: int = 4 << 30) -> CoreResult:
    """Dense facility location ``f(S) = sum_i max(0, max_{j in S} s_ij)`` (Mirzasoleiman, Bilmes & Leskovec,
    ICML 2020) by the exact greedy on the ``n x n`` kernel, with gains kept up to date; weights are cluster sizes
    (each point to its most similar pick, ties to the earlier pick)."""
    import torch

    kernel = dense_kernel(rows.whole().to(rows.device), similarity, gamma, max_dense_bytes)
    n = kernel.shape[0]
    step = max(1, _BLOCK_ELEMENTS // n)
    gains = torch.zeros(n, dtype=torch.float64, device=kernel.device)
    for s in range(0, n, step):
        gains += kernel[s:s + step].clamp(min=0.0).sum(dim=0, dtype=torch.float64)
    cur = torch.zeros(n, dtype=torch.float32, device=kernel.device)
    order: list[int] = []
    picked: list[float] = []
    bar = _progress(k, float(k) * n * 8, "facility location")
    for _ in range(k):
        j = int(torch.argmax(gains))
        column = kernel[:, j]
        picked.append(float((column - cur).clamp(min=0.0).sum(dtype=torch.float64)))
        order.append(j)
        changed = torch.nonzero(column > cur)[:, 0]
        for s in range(0, changed.numel(), step):
            pts = changed[s:s + step]
            block = kernel[pts]
            before = (block - cur[pts, None]).clamp(min=0.0)
            after = (block - column[pts, None]).clamp(min=0.0)
            gains -= (before - after).sum(dim=0, dtype=torch.float64)
        cur = torch.maximum(cur, column)
        gains[j] = float("-inf")
        bar.update(1)
    bar.close()
    picks = _index_tensor(order, kernel.device)
    assign = torch.cat([torch.argmax(kernel[s:s + step][:, picks], dim=1) for s in range(0, n, step)])
    weights = torch.bincount(assign, minlength=k).float().cpu().numpy()
    return np.asarray(order, dtype=np.int64), weights, np.asarray(picked, dtype=np.float64), float(sum(picked))


def knn_graph(x: Any, neighbors: int) -> tuple[Any, Any]:
    """Exact kNN graph (self included, distance exactly 0): ``(ids (n, K) int64, Euclidean distances (n, K))``
    sorted by (distance, id), from blocked ``|a|^2 + |b|^2 - 2 a.b`` tiles; the twin of ``erasus._core.knn_graph``."""
    import torch

    n = x.shape[0]
    if not 1 <= neighbors <= n:
        raise InvalidInputError(f"neighbors = {neighbors} must be in [1, n = {n}]")
    sq = _sq_norms(x)
    step = max(1, _BLOCK_ELEMENTS // n)
    ids, dists = [], []
    for s in range(0, n, step):
        tile = _sq_dist_tile(x[s:s + step], sq[s:s + step], x, sq)
        rows = torch.arange(s, s + tile.shape[0], device=x.device)
        tile[rows - s, rows] = -1.0  # the point itself first, ahead of exact duplicates with larger ids
        v, i = torch.topk(tile, neighbors, dim=1, largest=False, sorted=False)
        i, order = torch.sort(i, dim=1)
        v = torch.gather(v, 1, order)
        v, order = torch.sort(v, dim=1, stable=True)
        ids.append(torch.gather(i, 1, order))
        dists.append(v.clamp_(min=0.0).sqrt_())
    return torch.cat(ids), torch.cat(dists)


def edge_similarities(dist: Any, ids: Any, similarity: str, gamma: float, zero: Any | None) -> tuple[Any, float]:
    """Similarity of every kNN edge and the scale (``D_max`` over the graph's distances for craig, else 1)."""
    import torch

    if similarity == "craig":
        top = float(dist.max())
        return top - dist, top
    if similarity == "rbf":
        return torch.exp(-gamma * dist * dist), 1.0
    sims = 1.0 - 0.5 * dist * dist
    if zero is not None and bool(zero.any()):
        sims = torch.where(zero[:, None] | zero[ids], torch.zeros_like(sims), sims)
    return sims, 1.0


@contextlib.contextmanager
def _one_cpu_thread(device: Any) -> Iterator[None]:
    """Runs the block on one intra-op thread when ``device`` is the CPU: the greedy's per-step ops touch ~K^2
    elements, and waking a second thread for each costs more than it saves (10x slower measured on a shared
    2-core machine)."""
    import torch

    if device.type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def greedy_on_graph(ids: Any, sims: Any, k: int, *, valid: Any | None = None) -> tuple[list[int], list[float]]:
    """Exact greedy for ``f(S) = sum_i max(0, max_{j in S cap N(i)} s_ij)`` on a kNN graph (row ``i`` of ``ids``
    lists the candidates that can cover point ``i``), gains kept up to date; ``valid`` masks padding edges."""
    import torch

    n, width = ids.shape
    device = ids.device
    if valid is not None:
        sims = torch.where(valid, sims, torch.zeros_like(sims))
    flat_ids = ids.reshape(-1)
    flat_sims = sims.reshape(-1)
    gains = torch.zeros(n, dtype=torch.float64, device=device)
    gains.index_add_(0, flat_ids, flat_sims.clamp(min=0.0).double())
    order_edges = torch.argsort(flat_ids, stable=True)
    rev_points = order_edges // width
    rev_sims = flat_sims[order_edges]
    offsets = torch.zeros(n + 1, dtype=torch.int64, device=device)
    offsets[1:] = torch.cumsum(torch.bincount(flat_ids, minlength=n), dim=0)
    offsets_host = offsets.cpu().numpy()
    cur = torch.zeros(n, dtype=torch.float32, device=device)
    order: list[int] = []
    picked: list[float] = []
    bar = _progress(k, float(k) * width * width * 64, "facility location (kNN)")
    for _ in range(k):
        j = int(torch.argmax(gains))
        a, b = int(offsets_host[j]), int(offsets_host[j + 1])
        pts, s = rev_points[a:b], rev_sims[a:b]
        old = cur[pts]
        picked.append(float((s - old).clamp(min=0.0).sum(dtype=torch.float64)))
        order.append(j)
        better = s > old
        pts, new, old = pts[better], s[better], old[better]
        block = sims[pts]
        delta = (block - old[:, None]).clamp(min=0.0) - (block - new[:, None]).clamp(min=0.0)
        gains.index_add_(0, ids[pts].reshape(-1), -delta.reshape(-1).double())
        cur[pts] = new
        gains[j] = float("-inf")
        bar.update(1)
    bar.close()
    return order, picked


def nearest_pick_weights(x: Any, order: list[int], *, unit: bool) -> Any:
    """Cluster sizes: each row goes to its nearest pick (squared Euclidean on unit rows when ``unit``; a pick to
    itself; ties to the earlier pick), streamed over row blocks (never ``n x k`` at once)."""
    import torch

    if unit:
        x, _ = _unit_rows(x)
    n = x.shape[0]
    picks = _index_tensor(order, x.device)
    y = x[picks]
    xsq = _sq_norms(x)
    ysq = xsq[picks]
    pick_of = torch.full((n,), -1, dtype=torch.int64, device=x.device)
    pick_of[picks] = torch.arange(len(order), device=x.device)
    step = max(1, _BLOCK_ELEMENTS // len(order))
    counts = torch.zeros(len(order), dtype=torch.int64, device=x.device)
    for s in range(0, n, step):
        tile = _sq_dist_tile(x[s:s + step], xsq[s:s + step], y, ysq)
        own = pick_of[s:s + step]
        hit = torch.nonzero(own >= 0)[:, 0]
        tile[hit, own[hit]] = 0.0
        counts += torch.bincount(torch.argmin(tile, dim=1), minlength=len(order))
    return counts.float()


def facility_knn(rows: Rows, k: int, *, neighbors: int, similarity: str = "craig", gamma: float | None = None,
                 graph: tuple[Any, Any] | None = None) -> CoreResult:
    """Facility location on a kNN graph (Mirzasoleiman et al. 2020, sparse mode of ``erasus._core``): only a
    point's ``K`` nearest neighbours (itself included) can cover it. ``graph = (ids, distances)`` supplies a
    precomputed (e.g. approximate) graph; otherwise the exact one is built. Weights are computed over all pairs."""
    import torch

    x = rows.whole().to(rows.device)
    g = _gamma(similarity, gamma, rows.d)
    zero = None
    if similarity == "cosine":
        xg, zero = _unit_rows(x)
    else:
        xg = x
    valid = None
    if graph is None:
        ids, dist = knn_graph(xg, neighbors)
    else:
        ids, dist = graph
        ids = torch.as_tensor(ids, device=x.device).long()
        dist = torch.as_tensor(dist, device=x.device).float()
        valid = ids >= 0
        if not bool(valid.all()):
            ids = torch.where(valid, ids, torch.arange(ids.shape[0], device=x.device)[:, None])
            dist = torch.where(valid, dist, torch.zeros_like(dist))
        else:
            valid = None
    sims, _ = edge_similarities(dist, ids, similarity, g, zero)
    with _one_cpu_thread(ids.device):
        order, picked = greedy_on_graph(ids, sims, k, valid=valid)
    weights = nearest_pick_weights(x, order, unit=similarity == "cosine").cpu().numpy()
    return np.asarray(order, dtype=np.int64), weights, np.asarray(picked, dtype=np.float64), float(sum(picked))


def default_threads() -> int:
    """Threads for CPU-side libraries (faiss): the size of the Rust pool, so one setting governs both."""
    return int(_core.get_num_threads())
