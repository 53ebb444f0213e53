"""Tiny VideoMAE classifiers and clip data built offline, as a new user would from a config."""

from __future__ import annotations

import torch

FRAMES, SIZE, CLASSES = 4, 16, 5


def tiny_videomae(*, seed: int = 0, num_labels: int = CLASSES, channels: int = 1):
    from transformers import VideoMAEConfig, VideoMAEForVideoClassification

    torch.manual_seed(seed)
    cfg = VideoMAEConfig(image_size=SIZE, patch_size=8, num_channels=channels, num_frames=FRAMES, tubelet_size=2,
                         hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                         num_labels=num_labels, use_mean_pooling=True, attn_implementation="eager")
    return VideoMAEForVideoClassification(cfg).eval()


def clips(n: int, *, seed: int = 0, channels: int = 1, classes: int = CLASSES) -> list[dict[str, torch.Tensor]]:
    """``{"pixel_values": (frames, C, H, W), "labels": ()}`` items whose brightness depends on the label."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        y = i % classes
        x = torch.randn(FRAMES, channels, SIZE, SIZE, generator=g) * 0.5 + (y - classes / 2) * 0.3
        out.append({"pixel_values": x, "labels": torch.tensor(y)})
    return out
