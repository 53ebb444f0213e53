"""VideoMAE through the classification adapter: dict items collate to (B, frames, C, H, W) and the per-sample
loss is the model's own loss of each clip alone."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import default_collate

import erasus
from erasus.errors import InvalidInputError
from erasus.tasks import ClassificationTask, infer_task
from video_helpers import CLASSES, FRAMES, SIZE, clips, tiny_videomae


def test_items_collate_to_video_batches_and_the_classification_task_is_picked():
    model, items = tiny_videomae(), clips(6)
    batch = default_collate(items)
    assert batch["pixel_values"].shape == (6, FRAMES, 1, SIZE, SIZE) and batch["labels"].shape == (6,)
    assert isinstance(infer_task(model, items), ClassificationTask)


def test_per_sample_loss_equals_the_models_own_loss_one_clip_at_a_time():
    model, items = tiny_videomae(seed=3), clips(7, seed=1)
    losses = ClassificationTask().per_sample_loss(model, default_collate(items))
    with torch.no_grad():
        own = torch.stack([model(pixel_values=it["pixel_values"][None], labels=it["labels"][None]).loss
                           for it in items])
    assert losses.shape == (7,)
    torch.testing.assert_close(losses.detach(), own, rtol=1e-5, atol=1e-6)


def test_a_label_outside_the_models_classes_is_refused_before_work():
    model, items = tiny_videomae(), clips(3)
    items[1]["labels"] = torch.tensor(CLASSES)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(InvalidInputError, match=f"label {CLASSES} .* out of range"):
        erasus.get_strategy("gradient_ascent").unlearn(model=model, forget_data=items, steps=1, progress=False)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
