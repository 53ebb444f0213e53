"""Moving Fashion-MNIST: real Fashion-MNIST items bouncing across a small canvas, as video clips.

The motion follows Moving MNIST (Srivastava et al., "Unsupervised Learning of Video Representations using
LSTMs", ICML 2015): each item starts at a random position with a random velocity and is reflected at the
canvas borders. The original uses 64x64 canvases with 28x28 digits and 20 frames; here the canvas, the
item size and the clip length are parameters so that a small ``VideoMAEForVideoClassification`` can be
trained on two CPU cores. Only the motion is synthetic; every frame shows a real Fashion-MNIST image.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InvalidInputError
from .datasets import load_fashion_mnist

__all__ = ["bouncing_trajectories", "make_moving_clips", "load_moving_fashion_mnist"]


def bouncing_trajectories(n: int, *, frames: int, span: int, max_speed: int, seed: int) -> np.ndarray:
    """Integer top-left positions ``(n, frames, 2)`` in ``[0, span]``, reflected at both borders.

    Start positions are uniform in ``[0, span]``; each axis moves by a speed drawn from
    ``{-max_speed..max_speed} \\ {0}`` per frame (so every clip moves).
    """
    if n < 0 or frames < 1 or span < 0 or max_speed < 1:
        raise InvalidInputError(f"need n >= 0, frames >= 1, span >= 0, max_speed >= 1; got {n}, {frames}, {span}, "
                                f"{max_speed}")
    rng = np.random.default_rng(seed)
    pos = rng.integers(0, span + 1, size=(n, 2))
    speeds = rng.integers(1, max_speed + 1, size=(n, 2)) * rng.choice([-1, 1], size=(n, 2))
    out = np.empty((n, frames, 2), dtype=np.int64)
    for t in range(frames):
        out[:, t] = pos
        nxt = pos + speeds
        # reflect at the walls: a step past 0 or span comes back by the overshoot and the velocity flips
        low, high = nxt < 0, nxt > span
        nxt = np.where(low, -nxt, nxt)
        nxt = np.where(high, 2 * span - nxt, nxt)
        speeds = np.where(low | high, -speeds, speeds)
        pos = np.clip(nxt, 0, span)
    return out


def make_moving_clips(images: torch.Tensor, *, frames: int = 8, size: int = 32, item_size: int = 20,
                      max_speed: int = 3, seed: int = 0) -> torch.Tensor:
    """Clips ``(N, frames, 1, size, size)`` float32 in [0, 1] from images ``(N, 1, H, W)``.

    Each image is resized to ``item_size`` (antialiased bilinear) and pasted at its trajectory's position in
    every frame on a black canvas.
    """
    images = torch.as_tensor(images)
    if images.ndim != 4 or images.shape[1] != 1:
        raise InvalidInputError(f"images must be (N, 1, H, W), got {tuple(images.shape)}")
    if not 1 <= item_size <= size:
        raise InvalidInputError(f"item_size must be in [1, size={size}], got {item_size}")
    n = images.shape[0]
    items = F.interpolate(images.float(), size=(item_size, item_size), mode="bilinear", antialias=True,
                          align_corners=False).clamp_(0.0, 1.0)
    traj = bouncing_trajectories(n, frames=frames, span=size - item_size, max_speed=max_speed, seed=seed)
    clips = torch.zeros(n, frames, 1, size, size, dtype=torch.float32)
    for i in range(n):
        for t in range(frames):
            r, c = traj[i, t]
            clips[i, t, 0, r:r + item_size, c:c + item_size] = items[i, 0]
    return clips


def load_moving_fashion_mnist(*, n_train: int, n_test: int, frames: int = 8, size: int = 32, item_size: int = 20,
                              max_speed: int = 3, seed: int = 0
                              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(clips_train, y_train, clips_test, y_test)`` from a seeded subsample of Debian's Fashion-MNIST."""
    xtr, ytr, xte, yte = load_fashion_mnist(limit_train=n_train, limit_test=n_test, seed=seed)
    opts = {"frames": frames, "size": size, "item_size": item_size, "max_speed": max_speed}
    return (make_moving_clips(xtr, seed=2 * seed, **opts), ytr,
            make_moving_clips(xte, seed=2 * seed + 1, **opts), yte)
