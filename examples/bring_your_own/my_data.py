"""A user's own data and model for ``erasus benchmark``: scikit-learn's breast-cancer table and an MLP.

Run from this folder:  ``erasus benchmark --config benchmark.yaml --out report``.
Nothing here is built into erasus; the config names these functions as entry points (``my_data:load_split``).
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split


def load_split(seed: int = 0):
    """``(x_train, y_train, x_test, y_test)``: 569 tumours, 30 standardised features, 2 classes."""
    x, y = load_breast_cancer(return_X_y=True)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.25, random_state=seed, stratify=y)
    mean, std = xtr.mean(0), xtr.std(0)
    return ((xtr - mean) / std).astype(np.float32), ytr, ((xte - mean) / std).astype(np.float32), yte


def make_model(num_classes: int, input_shape: tuple[int, ...], hidden: int = 32) -> torch.nn.Module:
    """An untrained MLP; erasus fills in ``num_classes`` and ``input_shape`` from the data."""
    return torch.nn.Sequential(torch.nn.Linear(input_shape[0], hidden), torch.nn.ReLU(),
                               torch.nn.Linear(hidden, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, num_classes))
