"""Selection features over a Ray Dataset: embeddings or projected per-sample gradients computed by Ray Data
``map_batches`` actors (CPU or GPU), written as ``.npy`` shards that :func:`select_distributed` reads back."""

from __future__ import annotations

import os
from typing import Any, Callable, Literal

import numpy as np

from ..errors import ErasusTypeError, InvalidInputError, require

__all__ = ["extract_feature_shards"]

Kind = Literal["embeddings", "gradients"]


class _FeatureBatches:
    """A Ray Data actor: builds (or receives) the model once, then turns each numpy batch into feature rows
    with :func:`erasus.features.embeddings` or :func:`erasus.features.per_sample_gradients` (the JL / LoGra
    projection is a function of ``seed`` only, so every actor projects with the same matrix)."""

    def __init__(self, model: Any, kind: Kind, column: str, label_column: str | None, options: dict[str, Any]) -> None:
        import ray
        import torch

        self.model = model if isinstance(model, torch.nn.Module) else model()
        # an actor given GPUs (num_gpus=) sees only them as CUDA devices; batches follow the model's device
        if ray.get_gpu_ids() and torch.cuda.is_available():
            self.model = self.model.to("cuda")
        self.kind, self.column, self.label_column, self.options = kind, column, label_column, options

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        from .. import features

        x = torch.from_numpy(np.ascontiguousarray(batch[self.column]))
        data: Any = x
        if self.label_column is not None:
            data = (x, torch.from_numpy(np.ascontiguousarray(batch[self.label_column])))
        fn = features.embeddings if self.kind == "embeddings" else features.per_sample_gradients
        out = fn(self.model, data, batch_size=len(x), progress=False, **self.options)
        return {"features": out.detach().cpu().numpy().astype(np.float32)}


def _save(path: str, *blocks: np.ndarray) -> str:
    np.save(path, np.concatenate([np.asarray(b).reshape(len(b), -1) for b in blocks]).astype(np.float32))
    return path


def extract_feature_shards(
    dataset: Any,
    model: Any,
    out_dir: str | os.PathLike[str],
    *,
    shards: int,
    kind: Kind = "embeddings",
    column: str = "x",
    label_column: str | None = None,
    batch_size: int = 256,
    concurrency: int = 1,
    num_gpus: float = 0.0,
    **feature_options: Any,
) -> list[str]:
    """Compute per-row features of ``dataset`` (a Ray Dataset) and write them as ``shards`` ``.npy`` files.

    Args:
        dataset: rows with the model input in ``column`` (and the target in ``label_column``, which
            ``kind="gradients"`` needs for the per-sample loss).
        model: an ``nn.Module`` (shipped to each actor) or a zero-argument callable that builds / loads it
            inside the actor (use this for large models).
        out_dir: where ``shard00000.npy`` ... go (a filesystem every worker can reach).
        shards: number of files; file ``p`` holds rows ``[p n / shards, (p + 1) n / shards)`` in dataset order.
        kind: ``"embeddings"`` (:func:`erasus.features.embeddings`) or ``"gradients"``
            (:func:`erasus.features.per_sample_gradients`, e.g. ``proj_dim=``, ``projection=``, ``seed=``).
        concurrency: the actor pool's size (Ray Data's own scheduling).
        num_gpus: GPUs per actor; an actor with GPUs moves the model to ``cuda`` (Ray sets its
            ``CUDA_VISIBLE_DEVICES``). The GPU request is tested on CPU only (a node declaring a GPU resource);
            the CUDA path itself is untested here.

    Returns:
        The shard paths in row order, ready for ``select_distributed(paths, k, method)``.
    """
    ray = require("ray", "distributed", purpose="extract_feature_shards")
    if not (type(dataset).__module__.startswith("ray.data") and hasattr(dataset, "map_batches")):
        raise ErasusTypeError(f"dataset must be a ray.data.Dataset, got {type(dataset).__name__}")
    if kind not in ("embeddings", "gradients"):
        raise InvalidInputError(f"unknown kind {kind!r}; expected 'embeddings' or 'gradients'")
    if kind == "gradients" and label_column is None:
        raise InvalidInputError("kind='gradients' needs label_column= (the per-sample loss needs targets)")
    names = dataset.columns()
    for col in (column, label_column):
        if col is not None and col not in names:
            raise InvalidInputError(f"column {col!r} is not in the dataset's columns {names}")
    for name, value in (("shards", shards), ("batch_size", batch_size), ("concurrency", concurrency)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidInputError(f"{name} must be an integer >= 1, got {value!r}")
    import torch

    if not isinstance(model, torch.nn.Module) and not isinstance(model, Callable):  # type: ignore[arg-type]
        raise ErasusTypeError(f"model must be an nn.Module or a callable that builds one, got {type(model).__name__}")
    os.makedirs(out_dir, exist_ok=True)
    from ._order import preserve_order

    # rows keep dataset order, so shard p is a fixed row range; the flag must be set on the dataset's own
    # context (copied when it was created), the global one does not reach its execution
    with preserve_order(dataset):
        mapped = dataset.map_batches(
            _FeatureBatches, fn_constructor_kwargs={"model": model, "kind": kind, "column": column,
                                                    "label_column": label_column, "options": feature_options},
            batch_size=batch_size, batch_format="numpy", concurrency=concurrency, num_gpus=num_gpus,
        ).materialize()
        n = mapped.count()
        if shards > n:
            raise InvalidInputError(f"shards = {shards} exceeds the number of rows n = {n}")
        cuts = [p * n // shards for p in range(1, shards)]
        save = ray.remote(num_cpus=0.5)(_save)
        refs = [save.remote(os.path.join(os.fspath(out_dir), f"shard{p:05d}.npy"),
                            *piece.to_numpy_refs(column="features"))
                for p, piece in enumerate(mapped.split_at_indices(cuts))]
    return list(ray.get(refs))
