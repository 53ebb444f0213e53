"""Facility location and CRAIG (Mirzasoleiman, Bilmes & Leskovec, "Coresets for Data-efficient
Training of Machine Learning Models", ICML 2020), run in the Rust core.

``f(S) = sum_i max(0, max_{j in S} s_ij)`` is maximized greedily; each selected element's weight is
the number of points whose most similar selected element it is (the weights sum to n).
"""

from __future__ import annotations

import importlib.util
import warnings
from typing import Any, Callable, ClassVar, Literal

import numpy as np

from .. import _core
from ..errors import ErasusTypeError, InvalidInputError
from ..registry import register_selector
from ..selection import Selection
from ._geometry import TorchTwin, rust_seed
from ._torch import check_backend
from .base import FeatureKind, Selector

__all__ = ["FacilityLocationSelector", "CraigSelector", "per_class", "split_k"]

SIMILARITIES = ("craig", "cosine", "rbf")
OPTIMIZERS = ("naive", "lazy", "stochastic")
#: default dense budget (4 GiB); above it the dense mode is refused with the bytes it would need
DEFAULT_MAX_DENSE_BYTES = 4 << 30
GRAPHS = ("auto", "exact", "ivf", "hnsw")
#: n from which ``graph="auto"`` builds the approximate (IVF) graph: the exact graph costs n^2 d / 2 flops
#: (40 s at n = 200k on the 2-core development machine, ~1000 s at 10^6), IVF about n * nprobe * 256 * d
DEFAULT_GRAPH_THRESHOLD = 200_000
#: rows whose exact neighbours are computed to measure the approximate graph's recall
RECALL_SAMPLE = 1000

CoreResult = tuple[np.ndarray, np.ndarray, np.ndarray, float]


def _check_choice(name: str, value: Any, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise InvalidInputError(f"unknown {name} {value!r}; expected one of {allowed}")
    return value


def _check_int(name: str, value: Any, *, low: int, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ErasusTypeError(f"{name} must be an integer, got {type(value).__name__}")
    if int(value) < low:
        raise InvalidInputError(f"{name} must be >= {low}, got {value}")
    return int(value)


def check_common(*, optimizer: Any, epsilon: Any, max_dense_bytes: Any, neighbors: Any, partitions: Any,
                 gamma: Any) -> None:
    """Validates the options the facility-location and submodular selectors share."""
    _check_choice("optimizer", optimizer, OPTIMIZERS)
    if not isinstance(epsilon, (int, float)) or not 0.0 < float(epsilon) < 1.0:
        raise InvalidInputError(f"epsilon must be in (0, 1) (stochastic greedy's accuracy), got {epsilon!r}")
    _check_int("max_dense_bytes", max_dense_bytes, low=0)
    _check_int("neighbors", neighbors, low=1, allow_none=True)
    _check_int("partitions", partitions, low=1)
    if gamma is not None and (not isinstance(gamma, (int, float)) or not np.isfinite(gamma) or gamma <= 0):
        raise InvalidInputError(f"gamma must be a positive number (rbf similarity exp(-gamma * D^2)), got {gamma!r}")


def split_k(counts: np.ndarray, k: int) -> np.ndarray:
    """Per-class budgets proportional to ``counts`` (largest remainder, ties to the earlier class), each >= 1."""
    counts = np.asarray(counts, dtype=np.int64)
    if k < counts.size:
        raise InvalidInputError(f"per-class selection needs k >= the number of classes ({counts.size}), got k = {k}")
    quota = k * counts / counts.sum()
    alloc = np.floor(quota).astype(np.int64)
    order = np.lexsort((np.arange(counts.size), -(quota - alloc)))
    alloc[order[: k - int(alloc.sum())]] += 1
    for c in np.flatnonzero(alloc == 0):
        donor = int(np.argmax(alloc))  # first class with the largest budget gives one up
        alloc[donor] -= 1
        alloc[c] = 1
    return alloc


def per_class(x: Any, k: int, labels: np.ndarray, run: Callable[[Any, int], CoreResult]) -> CoreResult:
    """Runs ``run`` on each class's rows with a budget proportional to the class size and maps the picks back
    to global row ids; indices are class by class (sorted labels), the objective is the sum over classes."""
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    budgets = split_k(counts, k)
    parts = []
    for c, kc in enumerate(budgets):
        rows = np.flatnonzero(inverse == c)
        if isinstance(x, np.ndarray):
            part = np.ascontiguousarray(x[rows])
        else:  # a torch tensor, indexed on its own device
            import torch

            part = x[torch.as_tensor(rows, device=x.device)].contiguous()
        idx, w, g, obj = run(part, int(kc))
        parts.append((rows[idx], w, g, obj))
    return (
        np.concatenate([p[0] for p in parts]).astype(np.int64),
        np.concatenate([p[1] for p in parts]).astype(np.float32),
        np.concatenate([p[2] for p in parts]).astype(np.float64),
        float(sum(p[3] for p in parts)),
    )


@register_selector("facility_location")
class FacilityLocationSelector(TorchTwin, Selector):
    """Facility location ``f(S) = sum_i max(0, max_{j in S} s_ij)`` (Mirzasoleiman et al. 2020).

    Args:
        similarity: ``"craig"`` (``s = D_max - D``, D Euclidean; maximizing f minimizes CRAIG's
            ``sum_i min_{j in S} D_ij``), ``"cosine"``, or ``"rbf"`` (``exp(-gamma D^2)``, gamma default 1/d).
        neighbors: ``None`` for the dense ``n x n`` kernel, or K for the sparse exact kNN graph (self
            included; only a point's K nearest neighbours can cover it; for craig ``D_max`` is the largest
            kNN distance). Memory ``O(nK)``; the graph is built by blocked GEMM with a fused top-K.
        optimizer: ``"lazy"`` (Minoux; selects exactly what ``"naive"`` selects), ``"naive"``, or
            ``"stochastic"`` (Mirzasoleiman et al. 2015, ``(n/k) ln(1/epsilon)`` samples per step).
        max_dense_bytes: the dense mode refuses (``MemoryBudgetError`` with the bytes needed) when
            ``4 n^2`` exceeds it.
        partitions: GreeDi shards (Mirzasoleiman et al. 2013); > 1 runs the two-round distributed greedy
            and scores candidates on the all-pairs objective.
        per_class: with ``labels=``, select within each class with ``k`` split proportionally.
        graph: kNN graph of the sparse mode: ``"exact"`` (blocked GEMM tiles), ``"ivf"`` (approximate, faiss
            IVF-Flat: k-means cells of ~256 rows, each row searched exactly in its ``nprobe`` nearest cells, with
            ``nprobe`` calibrated on 500 seeded rows to reach ``recall_target``), ``"hnsw"`` (approximate, faiss
            HNSW32, ``efConstruction`` 64, ``efSearch`` 3.2 K), or ``"auto"``: exact below ``graph_threshold``
            rows, IVF from there on (CPU data). The approximate graphs need ``pip install 'erasus-unlearn[select]'``;
            their neighbour recall, measured against brute force on 1000 other seeded rows, is reported as
            ``metadata["knn_recall"]`` (IVF also reports ``nlist`` / ``nprobe``); the greedy then runs on the
            approximate graph (exact greedy, torch ops) and the weights are still computed over all pairs. faiss
            inserts HNSW points on several threads, so the HNSW graph (and with it a few picks) can differ between
            runs unless erasus runs on one thread (``ERASUS_NUM_THREADS=1``); the exact graph is deterministic.
        graph_threshold: the ``n`` from which ``graph="auto"`` builds the IVF graph (default 200 000).
        ef_search: HNSW search beam (default ``3.2 * neighbors``; wider = higher recall, slower).
        recall_target: the recall@K the IVF graph's ``nprobe`` is calibrated to (default 0.96).
        nprobe: IVF cells searched per row; ``None`` (default) calibrates it to ``recall_target``.
        backend: ``"auto"`` (the Rust core; a CUDA tensor is selected on its device with torch ops unless the
            stochastic optimizer or ``partitions`` ask for the Rust core), ``"rust"`` or ``"torch"`` (the torch
            twin, exact greedy: the picks of ``optimizer="naive"``/``"lazy"`` up to float ties).
    """

    per_class_default: ClassVar[bool] = False

    def __init__(
        self,
        *,
        seed: int = 0,
        similarity: Literal["craig", "cosine", "rbf"] = "craig",
        gamma: float | None = None,
        neighbors: int | None = None,
        optimizer: Literal["naive", "lazy", "stochastic"] = "lazy",
        epsilon: float = 0.01,
        max_dense_bytes: int = DEFAULT_MAX_DENSE_BYTES,
        partitions: int = 1,
        shuffle_partitions: bool = False,
        per_class: bool | None = None,
        graph: Literal["auto", "exact", "ivf", "hnsw"] = "auto",
        graph_threshold: int = DEFAULT_GRAPH_THRESHOLD,
        ef_search: int | None = None,
        recall_target: float = 0.96,
        nprobe: int | None = None,
        backend: Literal["auto", "rust", "torch"] = "auto",
    ) -> None:
        _check_choice("similarity", similarity, SIMILARITIES)
        check_common(optimizer=optimizer, epsilon=epsilon, max_dense_bytes=max_dense_bytes, neighbors=neighbors,
                     partitions=partitions, gamma=gamma)
        _check_choice("graph", graph, GRAPHS)
        _check_int("graph_threshold", graph_threshold, low=1)
        _check_int("ef_search", ef_search, low=1, allow_none=True)
        _check_int("nprobe", nprobe, low=1, allow_none=True)
        if isinstance(recall_target, bool) or not isinstance(recall_target, (int, float)) \
                or not 0.0 < float(recall_target) <= 1.0:
            raise InvalidInputError(f"recall_target must be a number in (0, 1] (the IVF graph's recall@K), got "
                                    f"{recall_target!r}")
        check_backend(backend, None)
        if graph in ("ivf", "hnsw") and neighbors is None:
            raise InvalidInputError(f"graph={graph!r} is the sparse mode's graph; pass neighbors=K (e.g. neighbors=50)")
        if backend == "torch" and (optimizer == "stochastic" or partitions > 1):
            raise InvalidInputError("backend='torch' runs the exact greedy on one partition; use optimizer='lazy' "
                                    "or 'naive' and partitions=1, or backend='rust'")
        per_class = self.per_class_default if per_class is None else bool(per_class)
        super().__init__(seed=seed, similarity=similarity, gamma=gamma, neighbors=neighbors, optimizer=optimizer,
                         epsilon=epsilon, max_dense_bytes=max_dense_bytes, partitions=partitions,
                         shuffle_partitions=shuffle_partitions, per_class=per_class, graph=graph,
                         graph_threshold=graph_threshold, ef_search=ef_search,
                         recall_target=float(recall_target), nprobe=nprobe, backend=backend)
        self._graphs: list[dict[str, Any]] = []

    def _approximate(self, n: int) -> bool:
        o = self.options
        if o["neighbors"] is None or o["graph"] == "exact":
            return False
        approximate = o["graph"] in ("ivf", "hnsw") or n >= o["graph_threshold"]
        if approximate and o["graph"] == "auto" and importlib.util.find_spec("faiss") is None:
            warnings.warn(f"n = {n} >= graph_threshold: the approximate IVF graph needs faiss-cpu (pip install "
                          "'erasus-unlearn[select]'); building the exact kNN graph instead (O(n^2 d))", stacklevel=4)
            return False
        if approximate and (o["optimizer"] == "stochastic" or o["partitions"] > 1):
            raise InvalidInputError(f"the approximate (IVF/HNSW) graph is used from n = {o['graph_threshold']} rows on and "
                                    "runs the exact greedy on one partition; use optimizer='lazy' and partitions=1, "
                                    "or graph='exact'")
        return approximate

    def _run_approximate(self, x: np.ndarray, k: int) -> CoreResult:
        from . import _ann, _torch

        o = self.options
        n = x.shape[0]
        kn = min(o["neighbors"], n)
        threads = _torch.default_threads()
        xg = x
        if o["similarity"] == "cosine":
            norms = np.sqrt(np.einsum("ij,ij->i", x, x, dtype=np.float64)).astype(np.float32)
            xg = np.ascontiguousarray(x / np.where(norms > 0, norms, 1.0)[:, None], dtype=np.float32)
        info: dict[str, Any] = {}
        if o["graph"] == "hnsw":
            ids, dist = _ann.hnsw_knn_graph(xg, kn, ef_search=o["ef_search"], threads=threads)
        else:
            ids, dist, info = _ann.ivf_knn_graph(
                xg, kn, recall_target=o["recall_target"], nprobe=o["nprobe"], threads=threads, seed=self.seed,
                avoid=_ann.recall_rows(n, RECALL_SAMPLE, self.seed))
        recall = _ann.knn_recall(xg, ids, sample=RECALL_SAMPLE, seed=self.seed)
        self._graphs.append({"graph": "hnsw" if o["graph"] == "hnsw" else "ivf", "n": n, "neighbors": kn,
                             "knn_recall": recall, "recall_sample": min(RECALL_SAMPLE, n), **info})
        rows = _torch.Rows(x, n, x.shape[1], n, _torch.cpu_device())
        return _torch.facility_knn(rows, k, neighbors=kn, similarity=o["similarity"], gamma=o["gamma"],
                                   graph=(ids, dist))

    def _run(self, x: np.ndarray, k: int) -> CoreResult:
        o = self.options
        n = x.shape[0]
        if self._approximate(n):
            return self._run_approximate(x, k)
        if o["neighbors"] is not None:
            self._graphs.append({"graph": "exact", "n": n, "neighbors": min(o["neighbors"], n)})
        return _core.facility_location(
            x, k, similarity=o["similarity"], gamma=o["gamma"],
            neighbors=None if o["neighbors"] is None else min(o["neighbors"], n),
            optimizer=o["optimizer"], epsilon=float(o["epsilon"]), seed=rust_seed(self.seed),
            max_dense_bytes=int(o["max_dense_bytes"]), partitions=min(o["partitions"], n),
            shuffle_partitions=bool(o["shuffle_partitions"]),
        )

    def _selection(self, run: Callable[[Any, int], CoreResult], x: Any, k: int, labels: np.ndarray | None,
                   extra: dict[str, Any]) -> Selection:
        meta: dict[str, Any] = dict(self.options)
        self._graphs = []
        try:
            if labels is not None and self.options["per_class"]:
                idx, w, g, obj = per_class(x, k, labels, run)
            else:
                idx, w, g, obj = run(x, k)
            if self._graphs:
                meta["graph"] = self._graphs[0]["graph"] if len(self._graphs) == 1 else [i["graph"] for i in self._graphs]
                recalls = [(i["knn_recall"], i["n"]) for i in self._graphs if "knn_recall" in i]
                if recalls:  # per class: the recall over all sampled rows, classes weighted by size
                    meta["knn_recall"] = float(sum(r * c for r, c in recalls) / sum(c for _, c in recalls))
                for key in ("nlist", "nprobe"):  # the IVF graph's cells and the calibrated probes, per class a list
                    values = [i[key] for i in self._graphs if key in i]
                    if values:
                        meta[key] = values[0] if len(values) == 1 else values
        finally:
            self._graphs = []
        meta.update(extra)
        return Selection(idx, w, g, obj, metadata=meta)

    def _select(self, x: np.ndarray, k: int, *, labels: np.ndarray | None) -> Selection:
        return self._selection(self._run, x, k, labels, {})

    def _torch_path(self, features: Any) -> bool:
        from ._torch import is_cuda_tensor

        # No streaming here: the dense kernel and the kNN graph hold n x n or n x K anyway. A CUDA tensor with the
        # stochastic optimizer or GreeDi partitions goes to the Rust core, which has them.
        o = self.options
        exact_greedy = o["optimizer"] != "stochastic" and o["partitions"] == 1
        return o["backend"] == "torch" or (o["backend"] == "auto" and exact_greedy and is_cuda_tensor(features))

    def _run_torch(self, x: Any, k: int) -> CoreResult:
        from . import _torch

        o = self.options
        n = int(x.shape[0])
        rows = _torch.Rows(x, n, int(x.shape[1]), n, x.device)
        if o["neighbors"] is None:
            return _torch.facility_dense(rows, k, similarity=o["similarity"], gamma=o["gamma"],
                                         max_dense_bytes=int(o["max_dense_bytes"]))
        if o["graph"] in ("ivf", "hnsw"):
            raise InvalidInputError(f"graph={o['graph']!r} builds the graph with faiss-cpu on host data; on a tensor use "
                                    "graph='exact' (built on its device) or pass a numpy array")
        self._graphs.append({"graph": "exact", "n": n, "neighbors": min(o["neighbors"], n)})
        return _torch.facility_knn(rows, k, neighbors=min(o["neighbors"], n), similarity=o["similarity"],
                                   gamma=o["gamma"])

    def _select_torch(self, rows: Any, k: int, *, labels: np.ndarray | None) -> Selection:
        return self._selection(self._run_torch, rows.whole(), k, labels, {"backend": "torch"})


@register_selector("craig")
class CraigSelector(FacilityLocationSelector):
    """CRAIG (Mirzasoleiman et al. 2020): facility location on per-sample gradient features with weights
    = cluster sizes, selected per class when ``labels=`` are given (the paper's per-class greedy).

    Without ``features=``, ``select(model=..., data=...)`` computes per-sample gradients. Options as in
    :class:`FacilityLocationSelector`.
    """

    default_features: ClassVar[FeatureKind] = "gradients"
    per_class_default: ClassVar[bool] = True
