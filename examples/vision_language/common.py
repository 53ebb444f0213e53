"""Shared material of the CLIP examples: coloured-square images with captions (four classes, forget ``red``),
a CLIP model (a small one built offline and trained here with ``--tiny``, else a hub id or local folder)
and zero-shot accuracy on the forget and the retain classes.

Not an example itself; the scripts beside it import it (Python puts a script's folder on ``sys.path``).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
import torch

import erasus
from erasus.models import CLIPWrapper

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220), "yellow": (230, 220, 30)}
CLASSES = list(COLOURS)
TEMPLATES = ("a photo of a {} square", "a {} square", "{} colour, product photo")
PROMPTS = [[t.format(c) for t in TEMPLATES] for c in CLASSES]
FORGET_CLASS = 0  # red


def parse_args(description: str) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--tiny", action="store_true", help="a small CLIP built offline and trained here (CPU, seconds)")
    p.add_argument("--model", default="openai/clip-vit-base-patch32", help="hub id or local CLIP folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None)
    return p.parse_args()


def images(labels: list[int], *, seed: int) -> list[Any]:
    """One 20x20 RGB image per label: the class colour plus per-pixel noise."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    out = []
    for y in labels:
        img = np.array(COLOURS[CLASSES[y]], dtype=np.float64)[None, None, :] + rng.normal(0, 25, size=(20, 20, 3))
        out.append(Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)))
    return out


def pairs(processor: Any, labels: list[int], *, seed: int) -> list[dict[str, torch.Tensor]]:
    """Per-sample dicts as ``CLIPProcessor`` returns them, with ``labels`` for zero-shot accuracy."""
    rng = np.random.default_rng(seed + 1)
    captions = [TEMPLATES[int(rng.integers(len(TEMPLATES)))].format(CLASSES[y]) for y in labels]
    enc = processor(images=images(labels, seed=seed), text=captions, padding="max_length", max_length=32,
                    truncation=True, return_tensors="pt")
    return [{"pixel_values": enc["pixel_values"][i], "input_ids": enc["input_ids"][i],
             "attention_mask": enc["attention_mask"][i], "labels": torch.tensor(y)} for i, y in enumerate(labels)]


def train(model: torch.nn.Module, data: list[dict[str, torch.Tensor]], *, steps: int, seed: int) -> None:
    """CLIP's own symmetric InfoNCE (transformers' ``return_loss=True``), a few Adam steps."""
    from torch.utils.data import DataLoader, default_collate

    loader = DataLoader(data, batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(seed),
                        collate_fn=default_collate)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
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
    model.eval()


def load(args: argparse.Namespace) -> tuple[CLIPWrapper, dict[str, list[dict[str, torch.Tensor]]]]:
    """The CLIP model to unlearn from and its data: forget (red), retain (the other colours), test (all)."""
    if args.tiny:
        from erasus.models import small_clip

        model, processor = small_clip(image_size=16, patch_size=8, hidden_size=32, num_layers=2, num_heads=4,
                                      projection_dim=16, max_text_length=32, seed=args.seed)
    else:
        loaded = CLIPWrapper(args.model, device=args.device)
        model, processor = loaded.model, loaded.processor
    data = {"forget": pairs(processor, [FORGET_CLASS] * 30, seed=args.seed + 1),
            "retain": pairs(processor, [1, 2, 3] * 20, seed=args.seed + 2),
            "test": pairs(processor, [0, 1, 2, 3] * 10, seed=args.seed + 3)}
    if args.tiny:  # a pretrained CLIP already tells colours apart; the small one learns them here
        train(model, data["forget"] + data["retain"], steps=80, seed=args.seed)
    return CLIPWrapper(model, processor=processor), data


def zero_shot(model: torch.nn.Module, test: list[dict[str, torch.Tensor]]) -> dict[str, float]:
    """Top-1 zero-shot accuracy (CLIP's protocol) on the forget-class and on the retain-class test images."""
    out = erasus.get_metric("zero_shot_accuracy", class_prompts=PROMPTS, forget_classes=[FORGET_CLASS],
                            topk=[1]).compute(model, test)
    return {"forget_top1": out["zero_shot_top1_forget"], "retain_top1": out["zero_shot_top1_retain"]}


class Timer:
    def __enter__(self) -> "Timer":
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.t0
