"""Task adapters: one place that knows a model family's batch layout, outputs and loss.

``infer_task(model, data)`` picks the adapter: an HF causal LM -> ``"causal_lm"``, a LLaVA / BLIP-2 style
model (``get_image_features`` and an ``image_token_id`` in a config with a ``text_config``, or a wrapper
flagged ``multimodal_causal_lm``) -> ``"multimodal_causal_lm"``, a CLIP-like model (``get_image_features`` +
``get_text_features``) -> ``"contrastive"``, a text-to-image diffusion wrapper (``unet``, ``scheduler``,
``encode_prompt``) -> ``"diffusion"``, an encoder-decoder (``config.is_encoder_decoder``: Whisper, T5, BART)
or dict samples with ``input_features`` and token ``labels`` -> ``"seq2seq"``, anything else -> ``"classification"``.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

import torch

from ..errors import InvalidInputError
from .base import Batch, Task, batch_size_of, get_task, list_tasks, move_to_device, reduce_loss, register_task
from .classification import ClassificationTask, logits_of

__all__ = [
    "Batch",
    "Task",
    "ClassificationTask",
    "infer_task",
    "get_task",
    "list_tasks",
    "register_task",
    "move_to_device",
    "batch_size_of",
    "reduce_loss",
    "logits_of",
]

# family -> module that registers its adapter (added by the family's own issue)
_FAMILY_MODULES = {"causal_lm": "erasus.tasks.causal_lm", "contrastive": "erasus.tasks.contrastive",
                   "multimodal_causal_lm": "erasus.tasks.multimodal_lm", "diffusion": "erasus.tasks.diffusion",
                   "seq2seq": "erasus.tasks.seq2seq"}


def _is_multimodal_lm(model: torch.nn.Module) -> bool:
    """LLaVA / BLIP-2 style: image features scattered into a language model's image-token positions."""
    config = getattr(model, "config", None)
    return hasattr(model, "get_image_features") and (
        getattr(model, "multimodal_causal_lm", False)
        or (getattr(config, "image_token_id", None) is not None and hasattr(config, "text_config"))
    )


def _family(model: torch.nn.Module, data: Any) -> str:
    if all(hasattr(model, a) for a in ("unet", "scheduler", "encode_prompt", "latents_of")):
        return "diffusion"
    if _is_multimodal_lm(model):
        return "multimodal_causal_lm"
    if hasattr(model, "get_image_features") and hasattr(model, "get_text_features"):
        return "contrastive"
    names = [c.__name__ for c in type(model).__mro__]
    if any(n.endswith("ForCausalLM") or n.endswith("LMHeadModel") for n in names):
        return "causal_lm"
    if getattr(getattr(model, "config", None), "is_encoder_decoder", False) is True:
        return "seq2seq"
    if isinstance(data, torch.utils.data.DataLoader):
        data = data.dataset
    sample = data
    if isinstance(data, torch.utils.data.Dataset) and hasattr(data, "__len__") and len(data) > 0:
        sample = data[0]
    first = data[0] if isinstance(data, list) and data else sample
    if isinstance(first, Mapping) and "input_features" in first and "labels" in first:
        if torch.as_tensor(first["labels"]).ndim == 1:
            return "seq2seq"
    if isinstance(sample, Mapping) and "input_ids" in sample:
        if "labels" in sample and torch.as_tensor(sample["labels"]).ndim == torch.as_tensor(sample["input_ids"]).ndim:
            return "multimodal_causal_lm" if "pixel_values" in sample else "causal_lm"
    return "classification"


def infer_task(model: torch.nn.Module, data: Any = None) -> Task:
    """Pick the task adapter for ``model`` (and optionally a sample of ``data``)."""
    family = _family(model, data)
    if family not in list_tasks() and family in _FAMILY_MODULES:
        try:
            importlib.import_module(_FAMILY_MODULES[family])
        except ModuleNotFoundError:
            raise InvalidInputError(
                f"{type(model).__name__} looks like a {family} model but erasus has no {family!r} task adapter "
                f"installed; pass task= explicitly (one of {list_tasks()})"
            ) from None
    return get_task(family)
