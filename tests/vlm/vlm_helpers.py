"""Tiny CLIP material for the vision-language tests: a small CLIPModel and the library's coloured squares with
captions (:mod:`erasus.models.tiny`)."""

from __future__ import annotations

import torch
from PIL import Image

from erasus.models import small_clip, tiny
from erasus.models.tiny import COLOUR_CLASSES, COLOUR_TEMPLATES, colour_square_pairs, colour_squares

CLASSES = COLOUR_CLASSES
TEMPLATES = COLOUR_TEMPLATES
IMAGE_SIZE = 16
TEXT_LENGTH = 32


def make_images(labels: list[int], *, seed: int) -> list[Image.Image]:
    """One image per label: the class colour with per-image noise (uint8 RGB, 20x20, resized by the processor)."""
    return colour_squares(labels, seed=seed)


def make_pairs(processor, labels: list[int], *, seed: int, with_labels: bool = True) -> list[dict]:
    """Per-sample dicts as CLIPProcessor returns them: pixel_values (3, H, W), input_ids (T,), attention_mask (T,)."""
    return colour_square_pairs(processor, labels, seed=seed, text_length=TEXT_LENGTH, with_labels=with_labels)


def tiny_clip(seed: int = 0):
    return small_clip(image_size=IMAGE_SIZE, patch_size=8, hidden_size=32, num_layers=2, num_heads=4,
                      projection_dim=16, max_text_length=TEXT_LENGTH, seed=seed)


def train_clip(model, pairs: list[dict], *, steps: int = 60, lr: float = 3e-3, seed: int = 0) -> torch.nn.Module:
    """A few Adam steps of CLIP's own loss (transformers' return_loss=True) on the pairs."""
    return tiny.train_clip(model, pairs, steps=steps, lr=lr, seed=seed)
