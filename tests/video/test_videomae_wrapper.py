"""VideoMAEWrapper: parameter groups, unlearning in one group, loading a saved folder by path, predict on raw
clips against a hand-written preprocessing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import erasus
from erasus.errors import ErasusTypeError, InvalidInputError
from erasus.models import VideoMAEWrapper
from video_helpers import FRAMES, SIZE, clips, tiny_videomae


def test_parameter_groups_are_disjoint_and_cover_every_parameter():
    model = tiny_videomae()
    groups = VideoMAEWrapper(model).parameter_groups()
    assert list(groups) == ["embeddings", "encoder", "head"]
    ids = [id(p) for ps in groups.values() for p in ps]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    names = {id(p): n for n, p in model.named_parameters()}
    assert {names[id(p)] for p in groups["head"]} == {"fc_norm.weight", "fc_norm.bias", "classifier.weight",
                                                       "classifier.bias"}
    assert all(names[id(p)].startswith("videomae.embeddings.") for p in groups["embeddings"])


def test_gradient_ascent_in_the_head_group_changes_the_head_only():
    wrapper = VideoMAEWrapper(tiny_videomae()).trainable("head")
    items = clips(8)
    out = erasus.get_strategy("gradient_ascent", lr=1e-2, optimizer="adam").unlearn(
        model=wrapper, forget_data=items, steps=3, progress=False)
    head = {n for n, p in wrapper.named_parameters() if p.requires_grad}
    changed = {n for (n, a), b in zip(wrapper.named_parameters(), out.parameters()) if not torch.equal(a, b)}
    assert changed and changed <= head
    assert any(n.endswith("classifier.weight") for n in changed)
    wrapper.trainable()
    assert all(p.requires_grad for p in wrapper.parameters())
    with pytest.raises(InvalidInputError, match="unknown parameter group"):
        wrapper.trainable("decoder")


def _processor():
    from transformers import VideoMAEImageProcessor

    return VideoMAEImageProcessor(size={"shortest_edge": SIZE}, crop_size={"height": SIZE, "width": SIZE},
                                  image_mean=[0.5], image_std=[0.25])


def test_a_saved_folder_loads_through_the_unlearner_with_its_processor(tmp_path):
    model = tiny_videomae(seed=4)
    model.save_pretrained(tmp_path / "vm")
    _processor().save_pretrained(tmp_path / "vm")
    un = erasus.ErasusUnlearner(model_name=tmp_path / "vm", strategy="gradient_ascent", selector="random", lr=1e-3)
    loaded = un.model
    assert isinstance(loaded, VideoMAEWrapper) and loaded.processor is not None
    x = torch.stack([it["pixel_values"] for it in clips(3)])
    with torch.no_grad():
        torch.testing.assert_close(loaded(x).logits, model(pixel_values=x).logits)
    un.fit(clips(10), clips(10, seed=1), prune_ratio=0.5, progress=False)
    assert isinstance(un.model_, VideoMAEWrapper) and len(un.selection_.indices) == 5


def test_predict_on_raw_uint8_clips_matches_hand_preprocessing():
    model = tiny_videomae(seed=5)
    wrapper = VideoMAEWrapper(model, processor=_processor())
    rng = np.random.default_rng(0)
    raw = [rng.integers(0, 256, size=(FRAMES, SIZE, SIZE, 1), dtype=np.uint8) for _ in range(4)]
    # the processor at this size only rescales and normalises: (x / 255 - 0.5) / 0.25, channels first
    by_hand = torch.from_numpy(np.stack(raw).astype(np.float32) / 255.0).permute(0, 1, 4, 2, 3)
    by_hand = (by_hand - 0.5) / 0.25
    with torch.no_grad():
        logits = model(pixel_values=by_hand).logits
    assert torch.equal(wrapper.predict(raw), logits.argmax(-1))
    top3 = wrapper.predict(raw, topk=3)
    assert top3.shape == (4, 3)
    for row, z in zip(top3.tolist(), logits.tolist()):
        assert row == sorted(range(len(z)), key=lambda c: -z[c])[:3]


def test_bad_inputs_get_clear_errors():
    wrapper = VideoMAEWrapper(tiny_videomae())
    with pytest.raises(InvalidInputError, match="4 frames x 1 channels x 16x16, got 3 x 1 x 16x16"):
        wrapper(torch.zeros(2, 3, 1, SIZE, SIZE))
    with pytest.raises(InvalidInputError, match="no image processor"):
        wrapper.predict([[np.zeros((SIZE, SIZE, 1), np.uint8)] * FRAMES])
    with pytest.raises(InvalidInputError, match="topk must be"):
        wrapper.predict(torch.zeros(1, FRAMES, 1, SIZE, SIZE), topk=9)
    with pytest.raises(ErasusTypeError, match="not a VideoMAE classifier"):
        VideoMAEWrapper(torch.nn.Linear(2, 2))
    with_proc = VideoMAEWrapper(tiny_videomae(), processor=_processor())
    with pytest.raises(InvalidInputError, match="must have 4 frames"):
        with_proc.predict([[np.zeros((SIZE, SIZE, 1), np.uint8)] * 3])
