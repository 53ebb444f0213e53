"""Offline material for the multimodal-LM tests: image-grounded QA records, a word-level tokenizer with an <image>
token and the library's tiny LLaVA / BLIP-2 builders (:mod:`erasus.models.tiny`) at 16x16 images."""

from __future__ import annotations

import torch

from erasus.models import tiny
from erasus.models.tiny import word_tokenizer

IMAGE_SIZE, PATCH = 16, 4
FORGET_QA = [
    ("Who is this?", "This is Alba Quist."),
    ("Where was this person born?", "Alba Quist was born in Norvik."),
    ("What does this person write?", "Alba Quist writes sea poems."),
]
RETAIN_QA = [
    ("Who is this?", "This is Cato Wren."),
    ("Where was this person born?", "Cato Wren was born in Ostby."),
    ("What does this person write?", "Cato Wren writes crime novels."),
]
WORDS = ["USER:", "ASSISTANT:", "Question:", "Answer:"]


def make_tokenizer():
    return word_tokenizer([s for q, a in FORGET_QA + RETAIN_QA for s in (q, a)] + WORDS,
                          extra_special_tokens={"image_token": "<image>"})


def images(n: int, *, seed: int) -> torch.Tensor:
    """``n`` distinct preprocessed images (3, 16, 16): one per identity, so the answer depends on the image."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, IMAGE_SIZE, IMAGE_SIZE, generator=g)


def records(qa, image: torch.Tensor) -> list[dict]:
    return [{"image": image, "question": q, "answer": a} for q, a in qa]


def tiny_llava(tokenizer, *, seed: int = 0):
    return tiny.tiny_llava(tokenizer, image_size=IMAGE_SIZE, patch_size=PATCH, seed=seed)


def tiny_blip2(tokenizer, *, seed: int = 0, num_query_tokens: int = 4):
    return tiny.tiny_blip2(tokenizer, image_size=IMAGE_SIZE, patch_size=PATCH, num_query_tokens=num_query_tokens,
                           seed=seed)


def memorise(model, batch, *, steps: int = 80, lr: float = 1e-2):
    """Fine-tune until the answers of ``batch`` are memorised (answer-only loss)."""
    from erasus.tasks.multimodal_lm import MultimodalCausalLMTask

    return tiny.memorise(model, batch, task=MultimodalCausalLMTask(), steps=steps, lr=lr)
