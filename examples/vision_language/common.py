"""Shared material of the CLIP examples: coloured-square images with captions (four classes, forget ``red``),
a CLIP model (a small one built offline and trained here with ``--tiny``, else a hub id or local folder)
and zero-shot accuracy on the forget and the retain classes.

Not an example itself; the scripts beside it import it (Python puts a script's folder on ``sys.path``).
"""

from __future__ import annotations

import argparse
import time

import torch

import erasus
from erasus.models import CLIPWrapper
from erasus.models.tiny import COLOUR_CLASSES, COLOUR_TEMPLATES, colour_square_pairs, train_clip

PROMPTS = [[t.format(c) for t in COLOUR_TEMPLATES] for c in COLOUR_CLASSES]
FORGET_CLASS = 0  # red


def parse_args(description: str) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--tiny", action="store_true", help="a small CLIP built offline and trained here (CPU, seconds)")
    p.add_argument("--model", default="openai/clip-vit-base-patch32", help="hub id or local CLIP folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None)
    return p.parse_args()


def load(args: argparse.Namespace) -> tuple[CLIPWrapper, dict[str, list[dict[str, torch.Tensor]]]]:
    """The CLIP model to unlearn from and its data: forget (red), retain (the other colours), test (all)."""
    if args.tiny:
        from erasus.models import small_clip

        model, processor = small_clip(image_size=16, patch_size=8, hidden_size=32, num_layers=2, num_heads=4,
                                      projection_dim=16, max_text_length=32, seed=args.seed)
    else:
        loaded = CLIPWrapper(args.model, device=args.device)
        model, processor = loaded.model, loaded.processor
    data = {"forget": colour_square_pairs(processor, [FORGET_CLASS] * 30, seed=args.seed + 1),
            "retain": colour_square_pairs(processor, [1, 2, 3] * 20, seed=args.seed + 2),
            "test": colour_square_pairs(processor, [0, 1, 2, 3] * 10, seed=args.seed + 3)}
    if args.tiny:  # a pretrained CLIP already tells colours apart; the small one learns them here
        train_clip(model, data["forget"] + data["retain"], steps=80, seed=args.seed)
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
