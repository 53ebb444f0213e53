"""Datasets from paths on disk, without unpickling anything.

Supported (chosen by what the path is):

- a folder of class sub-folders of images (``root/<class>/<image>``), read with PIL as float32 CHW
  tensors in [0, 1], labels by sorted class-folder name (the torchvision ``ImageFolder`` convention);
- a ``.npy`` file (features only), a ``.npz`` file or a ``.safetensors`` file with arrays named
  ``x``/``y`` (or ``features``/``labels``, ``inputs``/``targets``); ``.npy``/``.npz`` load with
  ``allow_pickle=False``;
- a ``.json`` (list of records) or ``.jsonl`` file (one record per line): records stay dicts, for text tasks;
- a folder saved with ``datasets.Dataset.save_to_disk`` (needs the ``datasets`` package).
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, TensorDataset

from ..errors import InvalidInputError, require
from ._records import read_json_lines

__all__ = ["load_path", "ImageFolderDataset", "RecordsDataset"]

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
PAIRS = (("x", "y"), ("features", "labels"), ("inputs", "targets"))


class ImageFolderDataset(Dataset):
    """Images under ``root/<class>/``; ``classes`` is the sorted list of class folder names."""

    def __init__(self, root: str | os.PathLike[str], *, mode: str | None = None) -> None:
        self.root = Path(root)
        self.classes = sorted(p.name for p in self.root.iterdir() if p.is_dir())
        self.samples = [
            (f, label)
            for label, cls in enumerate(self.classes)
            for f in sorted((self.root / cls).iterdir())
            if f.suffix.lower() in IMAGE_SUFFIXES
        ]
        if not self.samples:
            raise InvalidInputError(f"no images ({sorted(IMAGE_SUFFIXES)}) found under {self.root}/<class>/")
        self.mode = mode

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        path, label = self.samples[index]
        with Image.open(path) as img:
            if self.mode:
                img = img.convert(self.mode)
            arr = np.asarray(img, dtype=np.float32) / 255.0
        if arr.ndim == 2:
            arr = arr[None]
        else:
            arr = arr.transpose(2, 0, 1)
        return torch.from_numpy(np.ascontiguousarray(arr)), label


class RecordsDataset(Dataset):
    """A list of JSON records (dicts), e.g. ``{"question": ..., "answer": ...}`` for text tasks."""

    def __init__(self, records: list[dict[str, Any]]) -> None:
        self.records = records

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.records[index]


def _arrays_to_dataset(arrays: dict[str, np.ndarray], source: Path) -> Dataset:
    for xk, yk in PAIRS:
        if xk in arrays:
            x = torch.from_numpy(np.ascontiguousarray(arrays[xk]))
            if x.dtype == torch.float64:
                x = x.float()
            if yk in arrays:
                return TensorDataset(x, torch.from_numpy(np.ascontiguousarray(arrays[yk])).long())
            return TensorDataset(x)
    if len(arrays) == 1:
        return TensorDataset(torch.from_numpy(np.ascontiguousarray(next(iter(arrays.values())))))
    raise InvalidInputError(
        f"{source} holds arrays {sorted(arrays)}; expected a pair named one of {[f'{a}/{b}' for a, b in PAIRS]}"
    )


def load_path(path: str | os.PathLike[str]) -> Dataset:
    """Load a dataset from ``path`` (see the module docstring for the formats)."""
    p = Path(path)
    if not p.exists():
        raise InvalidInputError(f"data path {str(p)!r} does not exist")
    if p.is_file():
        from ..io import verify_file

        verify_file(p)
        try:
            return _load_file(p)
        except InvalidInputError:
            raise
        except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
            raise InvalidInputError(
                f"cannot read {str(p)!r} as {p.suffix or 'data'} ({type(exc).__name__}: {exc}); is it truncated or not "
                "what its name says? (.npy/.npz load without pickle)"
            ) from None
    if p.is_dir():
        if (p / "dataset_info.json").exists() or (p / "state.json").exists():
            datasets = require("datasets", "llm", purpose="loading a saved Hugging Face dataset")
            return datasets.load_from_disk(str(p))
        return ImageFolderDataset(p)
    raise InvalidInputError(f"data path {str(p)!r} is neither a file nor a folder")


def _load_file(p: Path) -> Dataset:
    suffix = p.suffix.lower()
    if suffix == ".npy":
        return _arrays_to_dataset({"x": np.load(p, allow_pickle=False)}, p)
    if suffix == ".npz":
        with np.load(p, allow_pickle=False) as z:
            return _arrays_to_dataset({k: z[k] for k in z.files}, p)
    if suffix == ".safetensors":
        from safetensors.numpy import load_file

        return _arrays_to_dataset(load_file(str(p)), p)
    if suffix == ".json":
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise InvalidInputError(f"{p} is not JSON: {exc.msg} (line {exc.lineno}); a .jsonl file holds one "
                                    f"record per line") from None
        if not isinstance(data, list):
            raise InvalidInputError(f"{p} must hold a JSON list of records, got {type(data).__name__}")
        return RecordsDataset(data)
    if suffix == ".jsonl":
        return RecordsDataset(read_json_lines(p))
    raise InvalidInputError(
        f"unsupported data file {p.name!r}; expected a folder, .npy, .npz, .safetensors, .json or .jsonl"
    )
