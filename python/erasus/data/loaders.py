"""Turn whatever the user holds (loader, dataset, arrays, tensors) into torch datasets/loaders.

Weighted coresets need each batch's positions in the forget set: :class:`IndexedDataset` yields
``(item, index)`` so a strategy can look up ``weights[index]`` per batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Subset, TensorDataset, default_collate

from ..errors import ErasusTypeError, InvalidInputError

__all__ = ["as_dataset", "as_loader", "collate_of", "IndexedDataset", "subset", "num_samples", "split_indexed"]

DEFAULT_BATCH_SIZE = 64


def _as_tensor(a: Any, what: str) -> torch.Tensor:
    if isinstance(a, torch.Tensor):
        return a
    if isinstance(a, np.ndarray):
        if a.dtype == object:
            raise ErasusTypeError(f"{what} is an object array; expected a numeric array")
        t = torch.from_numpy(np.ascontiguousarray(a))
        # sklearn/numpy default to float64 while torch models are float32
        return t.float() if t.dtype == torch.float64 else t
    raise ErasusTypeError(f"{what} must be a torch.Tensor or numpy array, got {type(a).__name__}")


def as_dataset(data: Any) -> Dataset:
    """A map-style dataset from a ``DataLoader``, a ``Dataset``, a tuple/list of equal-length arrays, or a tensor."""
    if isinstance(data, DataLoader):
        return data.dataset
    if isinstance(data, Dataset):
        if not hasattr(data, "__len__") or not hasattr(data, "__getitem__"):
            raise ErasusTypeError(f"{type(data).__name__} is not a map-style dataset (needs __len__ and __getitem__)")
        return data
    if isinstance(data, (torch.Tensor, np.ndarray)):
        t = _as_tensor(data, "data")
        if t.ndim == 0:
            raise InvalidInputError("data must have a leading sample dimension, got a 0-d array")
        return TensorDataset(t)
    if isinstance(data, (tuple, list)) and data and all(isinstance(a, (torch.Tensor, np.ndarray)) for a in data):
        tensors = [_as_tensor(a, f"data[{i}]") for i, a in enumerate(data)]
        lengths = {int(t.shape[0]) if t.ndim else -1 for t in tensors}
        if len(lengths) != 1 or -1 in lengths:
            shapes = [tuple(t.shape) for t in tensors]
            raise InvalidInputError(f"the arrays in data must share their first dimension, got shapes {shapes}")
        return TensorDataset(*tensors)
    if hasattr(data, "__len__") and hasattr(data, "__getitem__") and not isinstance(data, (str, bytes, dict)):
        return data  # e.g. a Hugging Face datasets.Dataset or a list of samples
    raise ErasusTypeError(
        f"cannot make a dataset from {type(data).__name__}; pass a DataLoader, a Dataset, a tensor, or (x, y) arrays"
    )


def as_loader(
    data: Any,
    *,
    batch_size: int | None = None,
    shuffle: bool = False,
    seed: int = 0,
    drop_last: bool = False,
) -> DataLoader:
    """A ``DataLoader`` over ``data`` (see :func:`as_dataset`).

    A ``DataLoader`` is returned as is unless a different ``batch_size`` or ``shuffle=True`` is asked for;
    it is then rebuilt over the same dataset with the same ``collate_fn``. ``batch_size`` defaults to 64 for
    non-loaders. Shuffling uses a generator seeded with ``seed`` (reproducible order).
    """
    if batch_size is not None and (not isinstance(batch_size, (int, np.integer)) or batch_size <= 0):
        raise InvalidInputError(f"batch_size must be a positive integer, got {batch_size!r}")
    collate = None
    if isinstance(data, DataLoader):
        if not shuffle and not drop_last and (batch_size is None or batch_size == data.batch_size):
            return data
        collate = data.collate_fn
        batch_size = batch_size or data.batch_size or DEFAULT_BATCH_SIZE
    dataset = as_dataset(data)
    generator = torch.Generator().manual_seed(int(seed)) if shuffle else None
    if collate is None:
        collate = collate_of(dataset)
    kwargs: dict[str, Any] = {"collate_fn": collate} if collate is not default_collate else {}
    return DataLoader(
        dataset,
        batch_size=int(batch_size or DEFAULT_BATCH_SIZE),
        shuffle=shuffle,
        generator=generator,
        drop_last=drop_last,
        **kwargs,
    )


def collate_of(data: Any) -> Callable[[list[Any]], Any]:
    """The collate function batches of ``data`` need: a ``DataLoader``'s own; for language-model datasets padded
    to different lengths (a ``ConcatDataset`` of forget and retain ``LMDataset`` s, say) a per-batch padding
    :class:`erasus.data.llm.LMCollator`, as transformers' ``DataCollatorForSeq2Seq`` pads; for encoder-decoder
    samples (``input_features`` + token ``labels``) :class:`erasus.tasks.seq2seq.Seq2SeqCollator`; else torch's
    ``default_collate``."""
    if isinstance(data, DataLoader):
        return data.collate_fn
    if _seq2seq_items(data):
        from ..tasks.seq2seq import Seq2SeqCollator

        return Seq2SeqCollator()
    found = _lm_datasets(data)
    if len({int(d.batch["input_ids"].shape[1]) for d in found}) > 1:
        from .llm import LMCollator

        return LMCollator(found[0].tokenizer)
    return default_collate


def _seq2seq_items(data: Any) -> bool:
    """Whether ``data`` holds encoder-decoder samples (``input_features`` + token ``labels``, e.g. Whisper) whose
    label sequences :class:`erasus.tasks.seq2seq.Seq2SeqCollator` pads to a batch."""
    while isinstance(data, (Subset, IndexedDataset)):
        data = data.dataset
    if isinstance(data, ConcatDataset):
        data = data.datasets[0] if data.datasets else data
    if isinstance(data, (str, bytes)) or not (hasattr(data, "__len__") and hasattr(data, "__getitem__")):
        return False
    try:
        if len(data) == 0:
            return False
        sample = data[0]
    except Exception:  # a dataset that cannot be indexed here is collated as before
        return False
    from ..tasks.seq2seq import is_seq2seq_sample

    return is_seq2seq_sample(sample)


def _lm_datasets(data: Any) -> list[Any]:
    """The ``LMDataset`` s inside ``data``, looking through ``Subset``, ``ConcatDataset`` and ``IndexedDataset``."""
    import sys

    llm = sys.modules.get("erasus.data.llm")
    if llm is None:  # no LMDataset can exist before its module is imported
        return []
    found, stack = [], [data]
    while stack:
        d = stack.pop()
        if isinstance(d, llm.LMDataset):
            found.append(d)
        elif isinstance(d, ConcatDataset):
            stack.extend(d.datasets)
        elif isinstance(d, (Subset, IndexedDataset)):
            stack.append(d.dataset)
    return found


class IndexedDataset(Dataset):
    """Wraps a dataset so ``__getitem__(i)`` returns ``(item, i)``; per-sample weights are looked up by ``i``."""

    def __init__(self, data: Any) -> None:
        self.dataset = as_dataset(data)

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[Any, int]:
        return self.dataset[index], index


def split_indexed(batch: Any) -> tuple[Any, torch.Tensor]:
    """Split a collated :class:`IndexedDataset` batch into ``(batch, indices)``."""
    item, idx = batch
    if isinstance(item, list):  # default_collate turns tuple items into lists
        item = tuple(item)
    return item, torch.as_tensor(idx).long()


def subset(data: Any, indices: Sequence[int] | np.ndarray | torch.Tensor) -> Dataset:
    """The samples of ``data`` at ``indices``, in the order given (e.g. a coreset of the forget set)."""
    dataset = as_dataset(data)
    idx = np.asarray(indices.cpu() if isinstance(indices, torch.Tensor) else indices)
    if idx.ndim != 1 or (idx.size and not np.issubdtype(idx.dtype, np.integer)):
        raise InvalidInputError(f"indices must be a 1-D integer array, got shape {idx.shape} dtype {idx.dtype}")
    n = len(dataset)  # type: ignore[arg-type]
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        raise InvalidInputError(f"indices must lie in [0, {n}), got min {idx.min()} max {idx.max()}")
    return Subset(dataset, idx.tolist())


def num_samples(data: Any) -> int:
    """Number of samples in a loader, dataset, tensor or tuple of arrays."""
    return len(as_dataset(data))  # type: ignore[arg-type]
