"""Small CNNs that train in seconds on two CPU cores (digits 8×8, Fashion-MNIST 28×28)."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["SmallCNN", "train_classifier"]


class SmallCNN(nn.Module):
    """conv(16) → conv(32) → global average pool → linear(64) → linear(classes).

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


def train_classifier(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epochs: int = 20, lr: float = 3e-3,
                     batch_size: int = 64, seed: int = 0, weight_decay: float = 5e-4) -> nn.Module:
    """Plain Adam training (the recipe shared by the original model and the retrained oracle)."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    model.train()
    n = len(x)
    for _ in range(epochs):
        perm = torch.randperm(n, generator=g)
        for i in range(0, n, batch_size):
            idx = perm[i: i + batch_size]
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    model.eval()
    return model
