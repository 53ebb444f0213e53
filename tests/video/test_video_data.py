"""VideoFolderDataset: .npy frame stacks and image-frame folders, labels from CSV / JSONL / class folders,
uniform and fixed-stride frame sampling, resizing and normalisation, clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import default_collate

from erasus.data.video import VideoFolderDataset, sample_frame_indices
from erasus.errors import InvalidInputError


def test_frame_indices_by_hand():
    assert sample_frame_indices(10, 4).tolist() == [0, 3, 6, 9]
    assert sample_frame_indices(8, 3).tolist() == [0, 3, 7]  # linspace 0, 3.5, 7 truncated
    assert sample_frame_indices(4, 4).tolist() == [0, 1, 2, 3]
    assert sample_frame_indices(10, 3, sampling="stride", stride=2).tolist() == [2, 4, 6]  # window 5 centred
    assert sample_frame_indices(5, 3, sampling="stride", stride=2).tolist() == [0, 2, 4]
    with pytest.raises(InvalidInputError, match="at least 5 frames, got 3"):
        sample_frame_indices(3, 5)
    with pytest.raises(InvalidInputError, match="3 frames at stride 4 need a clip of at least 9 frames, got 8"):
        sample_frame_indices(8, 3, sampling="stride", stride=4)
    with pytest.raises(InvalidInputError, match="sampling must be"):
        sample_frame_indices(8, 3, sampling="random")  # type: ignore[arg-type]


def _npy_clip(path, frames, seed):
    arr = np.random.default_rng(seed).integers(0, 256, size=(frames, 6, 5), dtype=np.uint8)
    np.save(path, arr)
    return arr


def test_npy_clips_with_csv_labels_give_videomae_items(tmp_path):
    a = _npy_clip(tmp_path / "a.npy", 10, 0)
    b = _npy_clip(tmp_path / "b.npy", 8, 1)
    (tmp_path / "labels.csv").write_text("clip,label\na.npy,cat\nb,dog\n")
    ds = VideoFolderDataset(tmp_path, num_frames=4, labels=tmp_path / "labels.csv")
    assert ds.classes == ["cat", "dog"] and len(ds) == 2
    item = ds[0]
    assert item["pixel_values"].shape == (4, 1, 6, 5) and item["labels"].dtype == torch.long
    np.testing.assert_allclose(item["pixel_values"][:, 0].numpy(), a[[0, 3, 6, 9]] / 255.0, rtol=1e-6)
    np.testing.assert_allclose(ds[1]["pixel_values"][:, 0].numpy(), b[[0, 2, 4, 7]] / 255.0, rtol=1e-6)
    batch = default_collate([ds[0], ds[1]])
    assert batch["pixel_values"].shape == (2, 4, 1, 6, 5) and batch["labels"].tolist() == [0, 1]


def test_image_frame_folders_by_class_folder_with_resize_and_normalisation(tmp_path):
    rng = np.random.default_rng(2)
    frames = {}
    for cls, clip in (("jump", "c1"), ("run", "c2")):
        folder = tmp_path / cls / clip
        folder.mkdir(parents=True)
        frames[cls] = rng.integers(0, 256, size=(5, 8, 8, 3), dtype=np.uint8)
        for t, f in enumerate(frames[cls]):
            Image.fromarray(f).save(folder / f"{t:03d}.png")
    ds = VideoFolderDataset(tmp_path, num_frames=3, sampling="stride", stride=2, mean=[0.5, 0.5, 0.5],
                            std=[0.25, 0.25, 0.25])
    assert ds.classes == ["jump", "run"]
    x = ds[1]["pixel_values"]
    assert x.shape == (3, 3, 8, 8) and int(ds[1]["labels"]) == 1
    expected = (frames["run"][[0, 2, 4]].astype(np.float32) / 255.0 - 0.5) / 0.25
    np.testing.assert_allclose(x.numpy(), expected.transpose(0, 3, 1, 2), rtol=1e-5, atol=1e-6)
    small = VideoFolderDataset(tmp_path, num_frames=3, size=4, channels=1)
    y = small[0]["pixel_values"]
    assert y.shape == (3, 1, 4, 4)
    # antialiased 8 -> 4 bilinear of a grey frame is close to the 2x2 block mean
    grey = np.asarray(Image.fromarray(frames["jump"][0]).convert("L"), dtype=np.float32) / 255.0
    blocks = grey.reshape(4, 2, 4, 2).mean(axis=(1, 3))
    assert np.abs(y[0, 0].numpy() - blocks).mean() < 0.08


def test_jsonl_labels_with_integer_ids(tmp_path):
    _npy_clip(tmp_path / "x.npy", 4, 3)
    _npy_clip(tmp_path / "y.npy", 4, 4)
    (tmp_path / "l.jsonl").write_text(json.dumps({"clip": "x.npy", "label": 3}) + "\n\n"
                                      + json.dumps({"clip": "y", "label": 0}) + "\n")
    ds = VideoFolderDataset(tmp_path, num_frames=2, labels=tmp_path / "l.jsonl")
    assert [int(ds[i]["labels"]) for i in range(2)] == [3, 0] and ds.classes == [0, 3]


def test_bad_folders_and_label_files_fail_at_construction(tmp_path):
    with pytest.raises(InvalidInputError, match="is not a folder"):
        VideoFolderDataset(tmp_path / "nope", num_frames=2)
    with pytest.raises(InvalidInputError, match="no clips"):
        VideoFolderDataset(tmp_path, num_frames=2)
    _npy_clip(tmp_path / "short.npy", 3, 0)
    (tmp_path / "l.csv").write_text("clip,label\nshort.npy,0\n")
    with pytest.raises(InvalidInputError, match="at least 4 frames, got 3"):
        VideoFolderDataset(tmp_path, num_frames=4, labels=tmp_path / "l.csv")
    (tmp_path / "m.csv").write_text("clip,label\nmissing.npy,0\n")
    with pytest.raises(InvalidInputError, match="row 1: clip 'missing.npy' is not a .npy file"):
        VideoFolderDataset(tmp_path, num_frames=2, labels=tmp_path / "m.csv")
    (tmp_path / "h.csv").write_text("name,y\nshort.npy,0\n")
    with pytest.raises(InvalidInputError, match="columns 'clip' and 'label'"):
        VideoFolderDataset(tmp_path, num_frames=2, labels=tmp_path / "h.csv")
    with pytest.raises(InvalidInputError, match="give both mean= and std="):
        VideoFolderDataset(tmp_path, num_frames=2, labels=tmp_path / "l.csv", mean=[0.5])
    np.save(tmp_path / "flat.npy", np.zeros((4, 5), np.float32))
    (tmp_path / "f.csv").write_text("clip,label\nflat.npy,0\n")
    with pytest.raises(InvalidInputError, match=r"shape \(4, 5\); expected \(T, H, W\)"):
        VideoFolderDataset(tmp_path, num_frames=2, labels=tmp_path / "f.csv")
    np.save(tmp_path / "nan.npy", np.full((4, 2, 2), np.nan, np.float32))
    (tmp_path / "n.csv").write_text("clip,label\nnan.npy,0\n")
    with pytest.raises(InvalidInputError, match="NaN or inf"):
        VideoFolderDataset(tmp_path, num_frames=2, labels=tmp_path / "n.csv")[0]
