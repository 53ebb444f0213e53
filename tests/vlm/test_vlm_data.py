"""Image-text data: captions CSV / JSONL folders, COCO captions JSON, records; errors before any image is read."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from erasus.data.vlm import ImageTextDataset, image_text_data, load_captions, load_coco_captions
from erasus.errors import InvalidInputError
from vlm_helpers import TEXT_LENGTH, make_images


def _folder(tmp_path, n=3):
    imgs = make_images(list(range(n)), seed=0)
    for i, img in enumerate(imgs):
        img.save(tmp_path / f"img{i}.png")
    return imgs


def test_csv_folder_gives_the_processor_outputs(tmp_path, processor):
    imgs = _folder(tmp_path)
    with (tmp_path / "captions.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["image", "caption", "label"])
        for i in range(3):
            w.writerow([f"img{i}.png", f"caption {i}", i])
    ds = image_text_data(tmp_path, processor)
    assert len(ds) == 3
    item = ds[1]
    ref = processor(images=[imgs[1]], text=["caption 1"], padding="max_length", max_length=ds.max_length,
                    truncation=True, return_tensors="pt")
    torch.testing.assert_close(item["pixel_values"], ref["pixel_values"][0])
    assert torch.equal(item["input_ids"], ref["input_ids"][0]) and int(item["labels"]) == 1
    assert ds.max_length == TEXT_LENGTH  # the tokenizer's model_max_length


def test_jsonl_and_missing_images_are_reported(tmp_path, processor):
    _folder(tmp_path, 2)
    (tmp_path / "pairs.jsonl").write_text("\n".join(json.dumps({"image": f"img{i}.png", "text": f"t{i}"})
                                                    for i in range(2)))
    assert [r["caption"] for r in load_captions(tmp_path / "pairs.jsonl")] == ["t0", "t1"]
    (tmp_path / "bad.jsonl").write_text(json.dumps({"image": "nope.png", "caption": "x"}))
    with pytest.raises(InvalidInputError, match="do not exist"):
        load_captions(tmp_path / "bad.jsonl")
    (tmp_path / "nocap.jsonl").write_text(json.dumps({"image": "img0.png"}))
    with pytest.raises(InvalidInputError, match="image and a caption"):
        load_captions(tmp_path / "nocap.jsonl")


def test_coco_captions_one_pair_per_caption(tmp_path, processor):
    _folder(tmp_path, 2)
    coco = {"images": [{"id": 7, "file_name": "img0.png"}, {"id": 9, "file_name": "img1.png"}],
            "annotations": [{"image_id": 9, "caption": "b"}, {"image_id": 7, "caption": "a"},
                            {"image_id": 9, "caption": "c"}]}
    (tmp_path / "captions_val.json").write_text(json.dumps(coco))
    recs = load_coco_captions(tmp_path / "captions_val.json")
    assert [(r["caption"], r["image_index"]) for r in recs] == [("b", 1), ("a", 0), ("c", 1)]
    ds = image_text_data(tmp_path / "captions_val.json", processor)
    assert len(ds) == 3 and int(ds[2]["image_index"]) == 1


def test_records_with_pil_images_and_arrays(processor):
    imgs = make_images([0, 1], seed=3)
    recs = [{"image": imgs[0], "text": "a"}, {"image": np.asarray(imgs[1]), "text": "b"}]
    ds = ImageTextDataset(recs, processor, max_length=8)
    assert ds[0]["input_ids"].shape == (8,) and ds[1]["pixel_values"].shape[0] == 3
    with pytest.raises(InvalidInputError, match="CLIPProcessor"):
        ImageTextDataset(recs, processor.tokenizer)
    with pytest.raises(InvalidInputError, match="image column"):
        ImageTextDataset([{"picture": imgs[0], "text": "a"}], processor)
