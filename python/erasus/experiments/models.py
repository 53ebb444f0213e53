"""A small CNN that trains in seconds on two CPU cores (digits 8×8, Fashion-MNIST 28×28)."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["SmallCNN"]


class SmallCNN(nn.Module):
    """conv(16) → conv(32, stride 2) → 2×2 average pool → linear(64) → linear(classes).

    The penultimate 64-d activation (``features``) is what embedding-based selectors use.
    """

    def __init__(self, *, in_channels: int = 1, num_classes: int = 10, width: int = 16) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1, stride=2), nn.ReLU(),
            nn.AdaptiveAvgPool2d(2), nn.Flatten(),
        )
        self.features = nn.Sequential(nn.Linear(8 * width, 64), nn.ReLU())
        self.head = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(self.conv(x)))
