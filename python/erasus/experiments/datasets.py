"""Real image data that needs no download: scikit-learn's bundled ``digits`` and Debian's Fashion-MNIST.

Each loader returns ``(x_train, y_train, x_test, y_test)`` as float32 NCHW tensors in [0, 1] and int64
labels, split reproducibly.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import torch

from ..errors import InvalidInputError

__all__ = ["load_digits_split", "load_fashion_mnist", "load_dataset", "FASHION_MNIST_DIRS"]

FASHION_MNIST_DIRS = (
    os.environ.get("ERASUS_FASHION_MNIST", ""),
    "/usr/share/datasets/fashion-mnist",  # Debian: apt-get install dataset-fashion-mnist
)

Split = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def load_digits_split(*, test_fraction: float = 0.25, seed: int = 0) -> Split:
    """scikit-learn's 8×8 digits (1,797 images), stratified train/test split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None]
    xtr, xte, ytr, yte = train_test_split(x, d.target, test_size=test_fraction, random_state=seed, stratify=d.target)
    return (torch.from_numpy(xtr), torch.from_numpy(ytr).long(), torch.from_numpy(xte), torch.from_numpy(yte).long())


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as fh:
        data = fh.read()
    magic = int.from_bytes(data[0:4], "big")
    ndim = magic & 0xFF
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_fashion_mnist(*, limit_train: int | None = None, limit_test: int | None = None, seed: int = 0) -> Split:
    """Fashion-MNIST (60k/10k 28×28) from Debian's ``dataset-fashion-mnist`` package (or $ERASUS_FASHION_MNIST)."""
    root = next((Path(d) for d in FASHION_MNIST_DIRS if d and (Path(d) / "train-images-idx3-ubyte.gz").exists()), None)
    if root is None:
        raise InvalidInputError(
            "Fashion-MNIST not found; install Debian's `dataset-fashion-mnist` package or set ERASUS_FASHION_MNIST "
            "to a folder holding train-images-idx3-ubyte.gz etc."
        )
    out = []
    for split, limit in (("train", limit_train), ("t10k", limit_test)):
        x = _read_idx(root / f"{split}-images-idx3-ubyte.gz").astype(np.float32)[:, None] / 255.0
        y = _read_idx(root / f"{split}-labels-idx1-ubyte.gz").astype(np.int64)
        if limit is not None and limit < len(x):
            keep = np.sort(np.random.default_rng(seed).choice(len(x), size=limit, replace=False))
            x, y = x[keep], y[keep]
        out += [torch.from_numpy(x), torch.from_numpy(y)]
    return out[0], out[1], out[2], out[3]


def load_dataset(name: str, *, seed: int = 0, limit_train: int | None = None, limit_test: int | None = None) -> Split:
    if name == "digits":
        return load_digits_split(seed=seed)
    if name == "fashion_mnist":
        return load_fashion_mnist(limit_train=limit_train, limit_test=limit_test, seed=seed)
    raise InvalidInputError(f"unknown dataset {name!r}; expected 'digits' or 'fashion_mnist'")
