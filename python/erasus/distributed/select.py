"""``select_distributed``: two-round GreeDi / composable k-center coresets over partitions that run as Ray
tasks or as torch.distributed ranks, each partition's greedy being the Rust core (which releases the GIL)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Literal, Sequence

import numpy as np

from ..errors import ErasusError, ErasusTypeError, InvalidInputError
from ..registry import get_selector
from ..selection import Selection, as_features
from . import greedi

__all__ = ["select_distributed"]

Backend = Literal["ray", "torch"]


@dataclass(frozen=True)
class _Part:
    """One partition as a task receives it: an in-memory array, a ``.npy`` path (opened as a memmap by the
    task itself), or a list of Ray object refs to blocks of a Ray Dataset column (resolved by Ray)."""

    kind: Literal["array", "path", "blocks"]
    n: int
    offset: int
    array: Any = None
    path: str | None = None
    rows: tuple[int, int] | None = None

    def load(self, blocks: Sequence[np.ndarray] = ()) -> np.ndarray:
        if self.kind == "path":
            x = np.load(self.path, mmap_mode="r")
            if self.rows is not None:
                x = x[self.rows[0]:self.rows[1]]
        elif self.kind == "blocks":
            x = np.concatenate([np.asarray(b).reshape(len(b), -1) for b in blocks])
        else:
            x = self.array
        return as_features(x, name=self.where())

    def where(self) -> str:
        return f"shard {self.path!r} (global rows from {self.offset})" if self.path else f"partition at global row {self.offset}"


def _in_part(part: _Part, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Runs ``fn`` and prefixes an erasus error (e.g. NaN at row r) with the partition it came from."""
    try:
        return fn(*args, **kwargs)
    except ErasusError as exc:
        raise type(exc)(f"{part.where()}: {exc}") from exc


def _check_k(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise ErasusTypeError(f"k must be an integer, got {type(k).__name__}")
    if int(k) <= 0:
        raise InvalidInputError(f"k must be >= 1, got {k}")
    return int(k)


def _npy_shape(path: str) -> tuple[int, ...]:
    if not isinstance(path, (str, os.PathLike)):
        raise ErasusTypeError(f"shard paths must be str or os.PathLike, got {type(path).__name__}")
    path = os.fspath(path)
    if not path.endswith(".npy"):
        raise InvalidInputError(f"shard {path!r} is not a .npy file; write shards with numpy.save")
    if not os.path.isfile(path):
        raise InvalidInputError(f"shard {path!r} does not exist")
    try:
        arr = np.load(path, mmap_mode="r")
    except Exception as exc:
        raise InvalidInputError(f"shard {path!r} could not be read as .npy: {exc}") from exc
    if arr.ndim != 2 or 0 in arr.shape:
        raise InvalidInputError(f"shard {path!r} must hold a non-empty 2-D (n, d) array, got shape {arr.shape}")
    if arr.dtype.kind not in "fiu":
        raise ErasusTypeError(f"shard {path!r} must be numeric, got dtype {arr.dtype}")
    return tuple(arr.shape)


def _is_ray_dataset(source: Any) -> bool:
    return type(source).__module__.startswith("ray.data") and hasattr(source, "split_at_indices")


def _bounds(n: int, m: int) -> list[tuple[int, int]]:
    return [(p * n // m, (p + 1) * n // m) for p in range(m)]


def _partitions_of(source: Any, partitions: int | None, *, seed: int, shuffle: bool,
                   column: str | None) -> tuple[list[_Part], int, int, np.ndarray | None]:
    """Validated partitions (no data is read but .npy headers), total rows ``n``, width ``d`` and, when the
    rows were shuffled before splitting, the permutation mapping partition order back to global rows."""
    if _is_ray_dataset(source):
        return _dataset_partitions(source, partitions, column=column)
    if isinstance(source, (list, tuple)):
        if not source:
            raise InvalidInputError("source is an empty list of shards")
        if partitions is not None and partitions != len(source):
            raise InvalidInputError(f"partitions = {partitions} but source holds {len(source)} shards; each shard is one "
                                    "partition (pass partitions=None)")
        parts, offset, width = [], 0, None
        for item in source:
            if isinstance(item, (str, os.PathLike)):
                shape = _npy_shape(item)
                part = _Part("path", shape[0], offset, path=os.fspath(item))
            else:
                arr = as_features(item, name=f"shard {len(parts)}")
                shape = arr.shape
                part = _Part("array", shape[0], offset, array=arr)
            if width is not None and shape[1] != width:
                raise InvalidInputError(f"shard {len(parts)} has {shape[1]} columns, shard 0 has {width}")
            width = shape[1]
            parts.append(part)
            offset += shape[0]
        return parts, offset, int(width), None
    x = as_features(source, name="source")
    n = x.shape[0]
    m = 1 if partitions is None else partitions
    if m > n:
        raise InvalidInputError(f"partitions = {m} exceeds the number of rows n = {n}")
    perm = None
    if shuffle:
        perm = np.random.default_rng(seed).permutation(n)
        x = x[perm]
    return [_Part("array", hi - lo, lo, array=x[lo:hi]) for lo, hi in _bounds(n, m)], n, x.shape[1], perm


def _dataset_partitions(ds: Any, partitions: int | None, *, column: str | None) -> tuple[list[_Part], int, int, None]:
    names = ds.columns() if hasattr(ds, "columns") else ds.schema().names
    if column is None:
        if len(names) != 1:
            raise InvalidInputError(f"the Ray Dataset has columns {names}; say which holds the features with column=")
        column = names[0]
    if column not in names:
        raise InvalidInputError(f"column {column!r} is not in the Ray Dataset's columns {names}")
    from ._order import preserve_order

    # the dataset's own context (copied at its creation) decides the block order, not the global one
    with preserve_order(ds):
        ds = ds.select_columns([column]).materialize()
        n = ds.count()
        if n == 0:
            raise InvalidInputError("the Ray Dataset is empty")
        m = 1 if partitions is None else partitions
        if m > n:
            raise InvalidInputError(f"partitions = {m} exceeds the number of rows n = {n}")
        cuts = [lo for lo, _ in _bounds(n, m)][1:]
        parts = []
        for (lo, hi), split in zip(_bounds(n, m), ds.split_at_indices(cuts)):
            parts.append(_Part("blocks", hi - lo, lo, array=split.to_numpy_refs(column=column)))
    first = np.asarray(ds.take(1)[0][column])
    return parts, n, int(first.size), None


def _check_method(method: Any, seed: int, options: dict[str, Any]) -> None:
    if method not in greedi.METHODS:
        raise InvalidInputError(f"select_distributed supports methods {greedi.METHODS}, got {method!r}")
    if method == "submodular":
        greedi.check_submodular(options)
    for key in ("partitions", "shuffle_partitions", "per_class", "initial"):
        if key in options:
            raise InvalidInputError(f"option {key!r} is not used by select_distributed (partitions are its own)")
    get_selector(method, seed=seed, **options)  # validates the options before any work


def select_distributed(
    source: Any,
    k: int,
    method: str = "facility_location",
    *,
    partitions: int | None = None,
    backend: Backend = "ray",
    seed: int = 0,
    shuffle: bool = False,
    column: str | None = None,
    score_locals: bool = True,
    task_cpus: float = 1.0,
    progress: bool = True,
    **options: Any,
) -> Selection:
    """Select ``k`` of the ``n`` rows of ``source`` with a two-round distributed greedy; indices are global rows.

    ``method="facility_location"`` / ``"craig"``: GreeDi (Mirzasoleiman et al., NeurIPS 2013) maximizing
    ``f(S) = sum_i max_{j in S} s_ij``: the single-machine selector picks ``k`` on each partition, then ``k``
    on the union of the picks; the best of the merged and the local solutions on ``f`` over all rows wins.
    ``method="kcenter"``: the composable coreset of Malkomes et al. (NeurIPS 2015), Gonzalez' greedy on each
    partition then on the union (4-approximation of the optimal covering radius), scored the same way.
    ``method="submodular"`` with ``function=`` ``"graph_cut"``, ``"saturated_coverage"``, ``"sum_redundancy"``,
    ``"feature_based"``, ``"log_determinant"`` (or ``"facility_location"``): GreeDi with the Rust core's
    submodular greedy per partition, candidates scored on the function over all rows
    (:mod:`erasus.distributed.greedi`); ``similarity="rbf"`` or ``"cosine"``.

    Args:
        source: with ``backend="ray"``, an ``(n, d)`` array (split into ``partitions`` contiguous row ranges,
            or a seeded random partition with ``shuffle=True``), a list of ``.npy`` shard paths (each shard a
            partition, loaded by its task as a memmap; global rows are the shards concatenated in order) or of
            arrays, or a Ray Dataset (``column`` holds the feature vectors; split into ``partitions`` row ranges).
            With ``backend="torch"``, this rank's partition (array or ``.npy`` path); ranks in rank order make
            the global rows.
        k: coreset size (``1 <= k <= n``).
        partitions: ``m``; with a list of shards it is the list's length, with ``backend="torch"`` the world size.
        backend: ``"ray"`` (uses the running Ray, ``ray.init()`` by the caller, or starts a local one for this
            call and shuts it down before returning; ``ray.init()`` once to reuse a Ray across calls) or
            ``"torch"`` (``torch.distributed`` must be initialized; every rank gets the same selection).
        seed: the selectors' seed (and the shuffle's); the same call gives the same indices.
        score_locals: also score every partition's own solution on all rows and keep the best (GreeDi's
            ``max(f(A_merged), max_i f(A_i))``); ``False`` scores the merged solution only (Malkomes et al.'s
            algorithm as published), which makes the scoring pass ``O(n k d)`` instead of ``O(m n k d)``.
        task_cpus: CPUs Ray reserves per partition task.
        options: the single-machine selector's options (``similarity=``, ``neighbors=``, ``optimizer=``,
            ``metric=`` ...).

    Returns:
        A :class:`erasus.Selection` over global row indices. ``weights``: for facility location / CRAIG the
        number of rows whose nearest selected element each one is (they sum to ``n``); ones for k-center.
        ``objective``: for ``similarity="craig"`` CRAIG's cost ``sum_i min_{j in S} ||x_i - x_j||`` (lower is
        better; the single-machine ``f`` is ``n D_max`` minus it), for ``"cosine"`` / ``"rbf"`` ``f(S)``, for
        k-center the covering radius. ``metadata`` records the partitions, the winning candidate, every
        candidate's objective and, with Ray, ``nodes``: the Ray node id each partition's round-1 task ran on
        (partition tasks are scheduled ``SPREAD`` over the nodes).
    """
    k = _check_k(k)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) < 2**64:
        raise InvalidInputError(f"seed must be an integer in [0, 2**64), got {seed!r}")
    seed = int(seed)
    if partitions is not None and (isinstance(partitions, bool) or not isinstance(partitions, (int, np.integer))
                                   or partitions < 1):
        raise InvalidInputError(f"partitions must be an integer >= 1, got {partitions!r}")
    _check_method(method, seed, options)
    if backend == "ray":
        return _select_ray(source, k, method, partitions=partitions, seed=seed, shuffle=shuffle, column=column,
                           score_locals=bool(score_locals), task_cpus=task_cpus, progress=progress, options=options)
    if backend == "torch":
        from .torch_backend import select_torch

        return select_torch(source, k, method, partitions=partitions, seed=seed, score_locals=bool(score_locals),
                            options=options)
    raise InvalidInputError(f"unknown backend {backend!r}; expected 'ray' or 'torch'")


def finish(k: int, method: str, n: int, m: int, seed: int, options: dict[str, Any], candidates: list[np.ndarray],
           values: np.ndarray, counts: np.ndarray, extra: dict[str, Any]) -> Selection:
    """The Selection for the winning candidate, given the objectives reduced over all partitions."""
    best = greedi.pick_best(values, method, options)
    # cluster sizes for facility location (also as a submodular function), as the single-machine selectors
    facility = (method in ("facility_location", "craig")
                or options.get("function", "facility_location") == "facility_location")
    weights = counts[best].astype(np.float32) if method != "kcenter" and facility else np.ones(k, dtype=np.float32)
    meta = {"backend": extra.pop("backend"), "partitions": m, "n": n, "seed": seed, "options": dict(options),
            "winner": "merged" if best == 0 else f"partition {extra['local_of'][best - 1]}",
            "candidate_objectives": values.tolist(),
            "algorithm": "composable k-center coreset (Malkomes et al. 2015)" if method == "kcenter"
            else "GreeDi (Mirzasoleiman et al. 2013)"}
    if "nodes" in extra:
        meta["nodes"] = extra["nodes"]
    return Selection(candidates[best], weights, None, float(values[best]), method, meta)


def _select_ray(source: Any, k: int, method: str, *, partitions: int | None, seed: int, shuffle: bool,
                column: str | None, score_locals: bool, task_cpus: float, progress: bool,
                options: dict[str, Any]) -> Selection:
    from ..errors import require

    ray = require("ray", "distributed", purpose="select_distributed(backend='ray')")
    if not isinstance(task_cpus, (int, float)) or task_cpus <= 0:
        raise InvalidInputError(f"task_cpus must be a positive number, got {task_cpus!r}")
    # a Ray this call starts is this call's to stop: its raylet, GCS and workers would otherwise outlive the
    # selection (a Ray Dataset implies a running Ray, which stays the caller's)
    started = not ray.is_initialized() and not _is_ray_dataset(source)
    if started:
        # address="local": a new Ray on this machine, never one that another process happens to run here
        ray.init(address="local", include_dashboard=False)
    try:
        return _run_ray(ray, source, k, method, partitions=partitions, seed=seed, shuffle=shuffle, column=column,
                        score_locals=score_locals, task_cpus=task_cpus, progress=progress, options=options)
    finally:
        if started:
            ray.shutdown()


def _run_ray(ray: Any, source: Any, k: int, method: str, *, partitions: int | None, seed: int, shuffle: bool,
             column: str | None, score_locals: bool, task_cpus: float, progress: bool,
             options: dict[str, Any]) -> Selection:
    from tqdm.auto import tqdm

    parts, n, _, perm = _partitions_of(source, partitions, seed=seed, shuffle=shuffle, column=column)
    if k > n:
        raise InvalidInputError(f"k = {k} exceeds the number of samples n = {n}; expected 1 <= k <= n")
    m = len(parts)
    # SPREAD: partitions are CPU-bound and independent, so they go to different nodes before sharing one
    round1 = ray.remote(num_cpus=task_cpus, scheduling_strategy="SPREAD")(_round1_task)
    evaluate = ray.remote(num_cpus=task_cpus, scheduling_strategy="SPREAD")(_evaluate_task)
    # arrays go to the object store once and are shared by both passes; paths and block refs travel as they are
    specs = [ray.put(p) if p.kind == "array" else p for p in parts]

    def args(p: _Part, spec: Any) -> list[Any]:
        return [spec, *p.array] if p.kind == "blocks" else [spec]

    def gather(refs: list[Any], desc: str) -> list[Any]:
        with tqdm(total=len(refs), desc=desc, disable=not progress) as bar:
            pending = list(refs)
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                bar.update(len(done))
        try:
            return ray.get(refs)
        except ray.exceptions.RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, ErasusError):
                raise cause from None
            raise

    local = gather([round1.remote(k, method, seed, options, *args(p, s)) for p, s in zip(parts, specs)],
                   f"{method}: round 1 on {m} partitions")
    nodes = [loc[2] for loc in local]
    ids = np.concatenate([loc[0] for loc in local])
    feats = np.concatenate([loc[1] for loc in local])
    merged_ids, merged_feats = greedi.union_greedy(ids, feats, k, method, seed=seed, options=options)
    local_of = [p for p, loc in enumerate(local) if len(loc[0]) == k] if score_locals else []
    cand_ids = [merged_ids] + [local[p][0] for p in local_of]
    cand_feats = [merged_feats] + [local[p][1] for p in local_of]
    fn = options.get("function", "facility_location") if method == "submodular" else None
    if fn is not None and fn not in greedi.ROW_SUMS:
        values = greedi.set_terms(cand_feats, n, options)
        counts = np.zeros((len(cand_feats), k), dtype=np.int64)
        return finish(k, method, n, m, seed, options, [perm[c] for c in cand_ids] if perm is not None else cand_ids,
                      values, counts, {"backend": "ray", "local_of": local_of, "nodes": nodes})
    totals: list[Any] = [None] * m
    if fn == "saturated_coverage":
        # the caps alpha sum_{j in V} s_ij: every partition's rows against every partition's rows
        pair = ray.remote(num_cpus=task_cpus, scheduling_strategy="SPREAD")(_totals_task)
        refs = [[pair.remote(options, 1 + len(p.array) if p.kind == "blocks" else 1, *args(p, s), *args(q, t))
                 for q, t in zip(parts, specs)] for p, s in zip(parts, specs)]
        flat = gather([r for row in refs for r in row], f"{method}: saturation caps over {m}x{m} partition pairs")
        totals = [ray.put(np.sum(flat[a * m:(a + 1) * m], axis=0)) for a in range(m)]
    cand_ref = ray.put(cand_feats)
    scored = gather([evaluate.remote(method, options, cand_ref, tot, *args(p, s))
                     for p, s, tot in zip(parts, specs, totals)], f"{method}: objective on {n} rows")
    values = np.stack([s[0] for s in scored])
    values = values.max(axis=0) if method == "kcenter" else values.sum(axis=0)
    if method == "submodular":
        values = values + greedi.set_terms(cand_feats, n, options)
    counts = np.sum([s[1] for s in scored], axis=0)
    if perm is not None:
        cand_ids = [perm[c] for c in cand_ids]
    return finish(k, method, n, m, seed, options, cand_ids, values, counts,
                  {"backend": "ray", "local_of": local_of, "nodes": nodes})


def _round1_task(k: int, method: str, seed: int, options: dict[str, Any], part: _Part,
                 *blocks: np.ndarray) -> tuple[np.ndarray, np.ndarray, str]:
    import ray

    from .. import _core

    # the Rust pool defaults to every core of the node; a task gets the CPUs Ray reserved for it
    threads = max(1, int(ray_cpus()))
    if _core.get_num_threads() != threads:
        _core.set_num_threads(threads)
    ids, feats = _in_part(part, lambda: greedi.local_greedy(part.load(blocks), k, method, seed=seed,
                                                            options=options, offset=part.offset))
    return ids, feats, ray.get_runtime_context().get_node_id()


def ray_cpus() -> float:
    """CPUs Ray assigned to the running task (1 outside a task)."""
    import ray

    try:
        return float(ray.get_runtime_context().get_assigned_resources().get("CPU", 1.0))
    except Exception:
        return 1.0


def _evaluate_task(method: str, options: dict[str, Any], candidates: list[np.ndarray], totals: np.ndarray | None,
                   part: _Part, *blocks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return _in_part(part, lambda: greedi.evaluate_candidates(part.load(blocks), candidates, method, options=options,
                                                             totals=totals))


def _totals_task(options: dict[str, Any], split: int, *args: Any) -> np.ndarray:
    """Row totals of partition a against partition b; ``args`` is a's spec and blocks (``split`` items), then b's."""
    a, b = args[0], args[split]
    return greedi.row_totals(a.load(args[1:split]), b.load(args[split + 1:]), options)
