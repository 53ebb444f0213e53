"""``select_distributed(..., backend="torch")``: each torch.distributed rank is one partition (gloo or NCCL).

Round 1 runs on every rank over its own rows; the local picks are all-gathered; rank 0 runs round 2 and
broadcasts the merged solution; every rank scores every candidate on its rows and the scores are reduced, so
all ranks return the same :class:`erasus.Selection`.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..errors import InvalidInputError, require
from ..selection import Selection, as_features
from . import greedi

__all__ = ["select_torch"]


def select_torch(source: Any, k: int, method: str, *, partitions: int | None, seed: int, score_locals: bool,
                 options: dict[str, Any]) -> Selection:
    torch = require("torch", "dev", purpose="select_distributed(backend='torch')")
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()):
        raise InvalidInputError("backend='torch' needs an initialized torch.distributed process group "
                                "(torch.distributed.init_process_group or accelerate / torchrun)")
    world, rank = dist.get_world_size(), dist.get_rank()
    if partitions is not None and partitions != world:
        raise InvalidInputError(f"partitions = {partitions} but the process group has {world} ranks; each rank is a partition")
    if isinstance(source, (str, os.PathLike)):
        from .select import _npy_shape

        _npy_shape(source)
        source = np.load(os.fspath(source), mmap_mode="r")
    x = as_features(source, name=f"rank {rank}'s partition")

    def all_gather(obj: Any) -> list[Any]:
        out: list[Any] = [None] * world
        dist.all_gather_object(out, obj)
        return out

    sizes = all_gather((int(x.shape[0]), int(x.shape[1])))
    if len({d for _, d in sizes}) != 1:
        raise InvalidInputError(f"ranks hold different feature widths: {[d for _, d in sizes]}")
    n = sum(s for s, _ in sizes)
    if k > n:
        raise InvalidInputError(f"k = {k} exceeds the number of samples n = {n}; expected 1 <= k <= n")
    offset = sum(s for s, _ in sizes[:rank])
    local = all_gather(greedi.local_greedy(x, k, method, seed=seed, options=options, offset=offset))
    box: list[Any] = [None]
    if rank == 0:
        ids = np.concatenate([loc[0] for loc in local])
        feats = np.concatenate([loc[1] for loc in local])
        box[0] = greedi.union_greedy(ids, feats, k, method, seed=seed, options=options)
    dist.broadcast_object_list(box, src=0)
    merged_ids, merged_feats = box[0]
    local_of = [p for p, loc in enumerate(local) if len(loc[0]) == k] if score_locals else []
    cand_ids = [merged_ids] + [local[p][0] for p in local_of]
    cands = [merged_feats] + [local[p][1] for p in local_of]
    from .select import finish

    fn = options.get("function", "facility_location") if method == "submodular" else None
    if fn is not None and fn not in greedi.ROW_SUMS:
        return finish(k, method, n, world, seed, options, cand_ids, greedi.set_terms(cands, n, options),
                      np.zeros((len(cands), k), dtype=np.int64), {"backend": "torch", "local_of": local_of})
    totals = None
    if fn == "saturated_coverage":
        # the caps alpha sum_{j in V} s_ij: each rank's rows in turn go to all ranks (one partition in memory at a time)
        totals = np.zeros(x.shape[0], dtype=np.float64)
        for src in range(world):
            box = [np.asarray(x) if rank == src else None]
            dist.broadcast_object_list(box, src=src)
            totals += greedi.row_totals(x, box[0], options)
    scored = all_gather(greedi.evaluate_candidates(x, cands, method, options=options, totals=totals))
    values = np.stack([s[0] for s in scored])
    values = values.max(axis=0) if method == "kcenter" else values.sum(axis=0)
    if method == "submodular":
        values = values + greedi.set_terms(cands, n, options)
    counts = np.sum([s[1] for s in scored], axis=0)

    return finish(k, method, n, world, seed, options, cand_ids, values, counts,
                  {"backend": "torch", "local_of": local_of})
