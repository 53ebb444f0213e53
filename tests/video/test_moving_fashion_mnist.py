"""Moving Fashion-MNIST clips: bouncing trajectories against a step-by-step simulation, every frame the same item."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from erasus.errors import InvalidInputError
from erasus.experiments.moving_fashion_mnist import bouncing_trajectories, make_moving_clips


def _simulate(start, speed, span, frames):
    """One coordinate, one pixel at a time: a step that would leave [0, span] turns back at the wall."""
    pos, v, out = start, speed, [start]
    for _ in range(frames - 1):
        step = 1 if v > 0 else -1
        for _ in range(abs(v)):
            if not 0 <= pos + step <= span:
                step, v = -step, -v
            pos += step
        out.append(pos)
    return out


def test_trajectories_bounce_like_a_pixel_by_pixel_simulation():
    traj = bouncing_trajectories(50, frames=12, span=7, max_speed=3, seed=0)
    assert traj.shape == (50, 12, 2) and traj.min() >= 0 and traj.max() <= 7
    for i in range(50):
        for axis in range(2):
            start = int(traj[i, 0, axis])
            first = int(traj[i, 1, axis]) - start
            # the first step may already reflect; recover the speed from the simulation that matches it
            cands = [v for v in range(-3, 4) if v and _simulate(start, v, 7, 2)[1] == start + first]
            assert any(_simulate(start, v, 7, 12) == traj[i, :, axis].tolist() for v in cands), (i, axis)
    assert (np.abs(np.diff(traj, axis=1)) > 0).any(axis=(1, 2)).all()  # every clip moves


def test_every_frame_shows_the_resized_item_at_its_position_on_a_black_canvas():
    images = torch.rand(6, 1, 28, 28)
    clip = make_moving_clips(images, frames=5, size=24, item_size=16, max_speed=2, seed=3)
    assert clip.shape == (6, 5, 1, 24, 24)
    traj = bouncing_trajectories(6, frames=5, span=8, max_speed=2, seed=3)
    items = F.interpolate(images, size=(16, 16), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)
    for i in range(6):
        for t in range(5):
            r, c = traj[i, t]
            torch.testing.assert_close(clip[i, t, 0, r:r + 16, c:c + 16], items[i, 0])
            mask = torch.ones(24, 24, dtype=torch.bool)
            mask[r:r + 16, c:c + 16] = False
            assert float(clip[i, t, 0][mask].abs().max()) == 0.0


def test_bad_shapes_are_refused():
    with pytest.raises(InvalidInputError, match=r"\(N, 1, H, W\)"):
        make_moving_clips(torch.rand(2, 28, 28))
    with pytest.raises(InvalidInputError, match="item_size"):
        make_moving_clips(torch.rand(2, 1, 28, 28), size=16, item_size=20)
