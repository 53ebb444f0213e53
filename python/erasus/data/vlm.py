"""Image-text pair data for CLIP-style models, read with PIL (no torchvision).

Sources:

* an image folder with a captions file: ``captions.csv`` (header ``image,caption``; an optional ``label``
  column) or ``captions.jsonl`` / ``.json`` records ``{"image": "relative/path.jpg", "caption": "..."}``;
* a COCO-captions JSON (``{"images": [{"id", "file_name"}], "annotations": [{"image_id", "caption"}]}``): one
  pair per caption;
* any ``datasets`` dataset (or list of dicts) with an image column (PIL images, arrays or paths) and a text column.

:class:`ImageTextDataset` runs the model's ``CLIPProcessor`` per item and returns the per-sample dict
``{"pixel_values": (3, H, W), "input_ids": (T,), "attention_mask": (T,)}`` (+ ``labels`` when known, + the
caption's ``image_index`` for multi-caption retrieval), text padded to one length so the default collate works.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import ErasusTypeError, InvalidInputError
from ._records import read_json_or_lines

__all__ = ["ImageTextDataset", "image_text_data", "load_captions", "load_coco_captions"]

CAPTION_FILES = ("captions.csv", "captions.jsonl", "captions.json")
_IMAGE_COLUMNS = ("image", "img", "image_path", "file_name", "filepath")
_TEXT_COLUMNS = ("caption", "text", "sentence", "captions")


def _records_from_file(path: Path) -> list[dict[str, Any]]:
    if path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8") as fh:
            rows = [dict(r) for r in csv.DictReader(fh)]
    else:
        obj: Any = read_json_or_lines(path)
        if isinstance(obj, Mapping) and "annotations" in obj and "images" in obj:
            return load_coco_captions(path)
        rows = obj if isinstance(obj, list) else [obj]
    if not rows or not all(isinstance(r, Mapping) for r in rows):
        raise InvalidInputError(f"{path} holds no image-caption records")
    return rows


def load_captions(path: str | os.PathLike[str], *, image_root: str | os.PathLike[str] | None = None
                  ) -> list[dict[str, Any]]:
    """Records ``{"image": absolute path, "caption": str, ["label": int]}`` from a captions file (CSV with an
    ``image,caption`` header, JSON lines or a JSON list; a COCO-captions JSON is recognised) or a folder holding
    ``captions.csv`` / ``captions.jsonl`` / ``captions.json``. Image paths are relative to ``image_root`` (default:
    the captions file's folder); missing images are reported before any is read."""
    p = Path(path)
    if p.is_dir():
        found = next((p / n for n in CAPTION_FILES if (p / n).is_file()), None)
        if found is None:
            raise InvalidInputError(f"{p} has none of {CAPTION_FILES}; write image,caption pairs into one of them")
        p = found
    if not p.is_file():
        raise InvalidInputError(f"no such captions file: {p}")
    root = Path(image_root) if image_root is not None else p.parent
    rows = _records_from_file(p)
    if rows and "image_index" in rows[0]:
        return rows  # COCO, already resolved
    out = []
    for i, r in enumerate(rows):
        img = next((r[k] for k in _IMAGE_COLUMNS if k in r), None)
        cap = next((r[k] for k in _TEXT_COLUMNS if k in r), None)
        if img is None or cap is None:
            raise InvalidInputError(f"{p} record {i} needs an image and a caption column (image,caption), got "
                                    f"{sorted(r)}")
        rec = {"image": str(root / str(img)), "caption": str(cap)}
        if r.get("label") not in (None, ""):
            rec["label"] = int(r["label"])
        out.append(rec)
    missing = [r["image"] for r in out if not Path(r["image"]).is_file()]
    if missing:
        raise InvalidInputError(f"{len(missing)} images listed in {p} do not exist, e.g. {missing[:3]}")
    return out


def load_coco_captions(path: str | os.PathLike[str], *, image_root: str | os.PathLike[str] | None = None
                       ) -> list[dict[str, Any]]:
    """One record per caption of a COCO-captions JSON (``captions_train2017.json`` layout), with
    ``image_index`` (the image's position among the file's images) for multi-caption retrieval."""
    p = Path(path)
    obj = json.loads(p.read_text(encoding="utf-8"))
    if not isinstance(obj, Mapping) or "images" not in obj or "annotations" not in obj:
        raise InvalidInputError(f"{p} is not a COCO-captions file (needs 'images' and 'annotations')")
    root = Path(image_root) if image_root is not None else p.parent
    position = {img["id"]: i for i, img in enumerate(obj["images"])}
    files = {img["id"]: img["file_name"] for img in obj["images"]}
    out = []
    for a in obj["annotations"]:
        if a.get("image_id") not in position:
            raise InvalidInputError(f"{p}: an annotation refers to image_id {a.get('image_id')!r}, not in 'images'")
        out.append({"image": str(root / files[a["image_id"]]), "caption": str(a["caption"]),
                    "image_index": position[a["image_id"]]})
    if not out:
        raise InvalidInputError(f"{p} has no caption annotations")
    return out


def _open_image(value: Any) -> Any:
    from PIL import Image

    if isinstance(value, (str, os.PathLike)):
        with Image.open(value) as img:
            return img.convert("RGB")
    if isinstance(value, Mapping) and value.get("path"):  # datasets' Image feature without decoding
        return _open_image(value["path"])
    if isinstance(value, np.ndarray):
        arr = value if value.dtype == np.uint8 else np.clip(value * 255 if value.max() <= 1 else value, 0, 255)
        return Image.fromarray(np.asarray(arr, dtype=np.uint8)).convert("RGB")
    if hasattr(value, "convert"):
        return value.convert("RGB")
    raise ErasusTypeError(f"an image is a path, a PIL image or an array, got {type(value).__name__}")


class ImageTextDataset(Dataset):
    """Image-caption records turned into CLIP model inputs by ``processor`` (a ``CLIPProcessor``).

    Args:
        records: a sequence of dicts (or a ``datasets.Dataset``) with an image and a caption.
        processor: the model's processor (image processor + tokenizer).
        image_column / text_column / label_column: column names (default: the first of ``image``/``img``/
            ``image_path``/``file_name``, ``caption``/``text``/``sentence``, and ``label`` when present).
        max_length: text length every item is padded / truncated to (default: the tokenizer's
            ``model_max_length``, capped at 77 as CLIP's).
    """

    def __init__(self, records: Any, processor: Any, *, image_column: str | None = None,
                 text_column: str | None = None, label_column: str | None = None,
                 max_length: int | None = None) -> None:
        if processor is None or not hasattr(processor, "image_processor"):
            raise InvalidInputError("image-text data needs the model's CLIPProcessor (image processor + tokenizer)")
        if len(records) == 0:
            raise InvalidInputError("no image-text records given")
        first = records[0]
        if not isinstance(first, Mapping):
            raise ErasusTypeError(f"image-text records are dicts, got {type(first).__name__}")
        self.image_column = image_column or next((k for k in _IMAGE_COLUMNS if k in first), None)
        self.text_column = text_column or next((k for k in _TEXT_COLUMNS if k in first), None)
        if self.image_column is None or self.text_column is None or self.image_column not in first or \
                self.text_column not in first:
            raise InvalidInputError(f"records need an image column and a text column; got {sorted(first)} (pass "
                                    "image_column= / text_column=)")
        self.label_column = label_column if label_column is not None else ("label" if "label" in first else None)
        tok = processor.tokenizer
        limit = getattr(tok, "model_max_length", 77)
        self.max_length = int(max_length if max_length is not None else min(limit if limit < 10_000 else 77, 77))
        self.records, self.processor = records, processor

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        r = self.records[index]
        text = r[self.text_column]
        if isinstance(text, (list, tuple)):  # datasets with several captions per image: the first one
            text = text[0]
        enc = self.processor(images=[_open_image(r[self.image_column])], text=[str(text)], padding="max_length",
                             max_length=self.max_length, truncation=True, return_tensors="pt")
        item = {"pixel_values": enc["pixel_values"][0], "input_ids": enc["input_ids"][0],
                "attention_mask": enc["attention_mask"][0]}
        if self.label_column is not None and r.get(self.label_column) is not None:
            item["labels"] = torch.tensor(int(r[self.label_column]))
        if "image_index" in r:
            item["image_index"] = torch.tensor(int(r["image_index"]))
        return item


def image_text_data(source: Any, processor: Any, **options: Any) -> Dataset:
    """A dataset of CLIP inputs from a captions file / folder / COCO JSON path, a list of records or a
    ``datasets`` dataset with image and text columns; already-processed pair datasets pass through."""
    if isinstance(source, (str, os.PathLike)):
        p = Path(source)
        if p.is_file() and p.suffix.lower() == ".json":
            obj = json.loads(p.read_text(encoding="utf-8"))
            if isinstance(obj, Mapping) and "annotations" in obj:
                return ImageTextDataset(load_coco_captions(p, image_root=options.pop("image_root", None)), processor,
                                        **options)
        return ImageTextDataset(load_captions(p, image_root=options.pop("image_root", None)), processor, **options)
    if hasattr(source, "__len__") and hasattr(source, "__getitem__") and not isinstance(source, (str, bytes, Mapping)):
        if len(source) == 0:
            raise InvalidInputError("no image-text records given")
        first = source[0]
        if not isinstance(first, Mapping) or "pixel_values" in first:
            return source  # already model inputs (or another layout the task adapter checks per batch)
        return ImageTextDataset(source, processor, **options)
    raise ErasusTypeError(f"image-text data is a path, a list of records or a datasets.Dataset, got "
                          f"{type(source).__name__}")
