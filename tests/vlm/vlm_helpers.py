"""Tiny CLIP material for the vision-language tests: a small CLIPModel, coloured-pattern images and captions."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from erasus.models import small_clip

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220), "yellow": (230, 220, 30)}
CLASSES = list(COLOURS)
TEMPLATES = ("a photo of a {} square", "a {} square", "{} colour, product photo")
IMAGE_SIZE = 16
TEXT_LENGTH = 32


def make_images(labels: list[int], *, seed: int) -> list[Image.Image]:
    """One image per label: the class colour with per-image noise (uint8 RGB, 20x20, resized by the processor)."""
    rng = np.random.default_rng(seed)
    out = []
    for y in labels:
        base = np.array(COLOURS[CLASSES[y]], dtype=np.float64)
        img = base[None, None, :] + rng.normal(0, 25, size=(20, 20, 3))
        out.append(Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)))
    return out


def make_pairs(processor, labels: list[int], *, seed: int, with_labels: bool = True) -> list[dict]:
    """Per-sample dicts as CLIPProcessor returns them: pixel_values (3, H, W), input_ids (T,), attention_mask (T,)."""
    rng = np.random.default_rng(seed + 1)
    captions = [TEMPLATES[int(rng.integers(len(TEMPLATES)))].format(CLASSES[y]) for y in labels]
    enc = processor(images=make_images(labels, seed=seed), text=captions, padding="max_length",
                    max_length=TEXT_LENGTH, truncation=True, return_tensors="pt")
    pairs = [{k: enc[k][i] for k in ("pixel_values", "input_ids", "attention_mask")} for i in range(len(labels))]
    if with_labels:
        for p, y in zip(pairs, labels):
            p["labels"] = torch.tensor(y)
    return pairs


def tiny_clip(seed: int = 0):
    return small_clip(image_size=IMAGE_SIZE, patch_size=8, hidden_size=32, num_layers=2, num_heads=4,
                      projection_dim=16, max_text_length=TEXT_LENGTH, seed=seed)


def train_clip(model, pairs: list[dict], *, steps: int = 60, lr: float = 3e-3, seed: int = 0) -> torch.nn.Module:
    """A few Adam steps of CLIP's own loss (transformers' return_loss=True) on the pairs."""
    from torch.utils.data import DataLoader, default_collate

    g = torch.Generator().manual_seed(seed)
    loader = DataLoader(pairs, batch_size=16, shuffle=True, generator=g, collate_fn=default_collate)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    done = 0
    while done < steps:
        for b in loader:
            out = model(pixel_values=b["pixel_values"], input_ids=b["input_ids"], attention_mask=b["attention_mask"],
                        return_loss=True)
            opt.zero_grad()
            out.loss.backward()
            opt.step()
            done += 1
            if done == steps:
                break
    return model.eval()
