"""Embeddings from forward hooks: penultimate features or any named layer's output."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from ..errors import InvalidInputError
from ..tasks import Task
from .gradients import _prepared, _resolve
from .hooks import _is_hf_conv1d

__all__ = ["embeddings"]


def _last_linear(model: nn.Module) -> tuple[str, nn.Module]:
    last = None
    for name, m in model.named_modules():
        if isinstance(m, nn.Linear) or _is_hf_conv1d(m):
            last = (name, m)
    if last is None:
        raise InvalidInputError(f"{type(model).__name__} has no nn.Linear layer to take penultimate features "
                                "from; pass layer='<module name>'")
    return last


def _pool(x: torch.Tensor, batch: Any, size: int) -> torch.Tensor:
    """(B, ...) -> (B, d): token sequences are averaged over their attention mask, other shapes flattened."""
    if x.ndim == 3 and isinstance(batch, Mapping) and batch.get("attention_mask") is not None:
        mask = batch["attention_mask"].to(x.device, x.dtype)
        if mask.shape == x.shape[:2]:
            return (x * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp_min(1)
    return x.reshape(size, -1)


def _has_own_embeddings(task: Any) -> bool:
    return type(task).embeddings is not Task.embeddings


def _task_embeddings(model: nn.Module, task: Task, loader: Any, device: Any, n: int, progress: bool) -> torch.Tensor:
    rows = []
    with _prepared(model, []), torch.no_grad():
        for batch in tqdm(loader, desc="embeddings", disable=not progress, leave=False):
            rows.append(task.embeddings(model, task.to_device(batch, device)).float().cpu())
    out = torch.cat(rows)
    if out.shape[0] != n:
        raise InvalidInputError(f"the task's embeddings gave {out.shape[0]} rows for {n} samples")
    return out


def embeddings(model: nn.Module, data: Any, *, layer: str | None = None, task: Any = None, batch_size: int = 64,
               device: Any = None, progress: bool = True) -> torch.Tensor:
    """Per-sample features from a forward hook, float32 (n, d) on CPU.

    ``layer=None``: the task's own embedding when its family defines one (CLIP: the normalised image and text
    embeddings side by side), else penultimate features, i.e. the input of the model's last ``nn.Linear`` (the
    classifier / LM head). ``layer="name"``: that module's output (first element of a tuple output). Token sequences
    (B, T, d) are mean-pooled over ``attention_mask`` when the batch has one; other outputs are flattened.
    """
    model, task, loader, device, n = _resolve(model, data, task, device, batch_size)
    if layer is None and _has_own_embeddings(task):
        return _task_embeddings(model, task, loader, device, n, progress)
    if layer is None:
        _, module = _last_linear(model)
        take_input = True
    else:
        modules = dict(model.named_modules())
        if layer not in modules:
            raise InvalidInputError(f"layer {layer!r} is not a module of {type(model).__name__}; some names: "
                                    f"{[k for k in modules if k][:8]}")
        module, take_input = modules[layer], False
    captured: list[torch.Tensor] = []

    def hook(mod: nn.Module, args: tuple, output: Any) -> None:
        value = args[0] if take_input else output
        if isinstance(value, (tuple, list)):
            value = value[0]
        captured.append(value.detach())

    out: torch.Tensor | None = None
    row = 0
    handle = module.register_forward_hook(hook)
    try:
        with _prepared(model, []), torch.no_grad():
            for batch in tqdm(loader, desc="embeddings", disable=not progress, leave=False):
                batch = task.to_device(batch, device)
                size = task.batch_size(batch)
                captured.clear()
                task.outputs(model, batch)
                if not captured:
                    raise InvalidInputError(f"layer {layer!r} was not called in the forward pass")
                feats = _pool(captured[-1], batch, size).float().cpu()
                if out is None:
                    out = torch.empty(n, feats.shape[1], dtype=torch.float32)
                out[row:row + size] = feats
                row += size
    finally:
        handle.remove()
    assert out is not None
    return out[:row]
