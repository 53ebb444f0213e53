"""What the vision-language strategies share: tower parameter groups and a frozen-parameter scope."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from ...errors import InvalidInputError
from ...tasks.contrastive import ContrastiveTask

__all__ = ["contrastive_task", "frozen_except", "tower_parameters"]


def tower_parameters(model: torch.nn.Module) -> dict[str, list[torch.nn.Parameter]]:
    """``{"vision": image tower + its projection, "text": text tower + its projection, "logit_scale": [...]}``
    from the model's wrapper parameter groups (:func:`erasus.models.clip.clip_parameter_groups`)."""
    from ...models.clip import clip_parameter_groups

    g = clip_parameter_groups(model, split_projection=True)
    return {"vision": g["vision"] + g["vision_projection"], "text": g["text"] + g["text_projection"],
            "logit_scale": g["logit_scale"]}


def contrastive_task(task: object, strategy: str) -> ContrastiveTask:
    if not isinstance(task, ContrastiveTask):
        raise InvalidInputError(f"strategy {strategy!r} unlearns image-text pairs of a CLIP-style model (the "
                                f"'contrastive' task); this model and data resolved to {getattr(task, 'name', task)!r}")
    return task


@contextlib.contextmanager
def frozen_except(model: torch.nn.Module, trainable: list[torch.nn.Parameter]) -> Iterator[None]:
    """``requires_grad=False`` on every parameter not in ``trainable`` for the block; flags restored after.
    A frozen parameter gets no gradient and no optimizer state, so it leaves the block bit for bit as it came."""
    keep = {id(p) for p in trainable}
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(id(p) in keep and p.requires_grad)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
