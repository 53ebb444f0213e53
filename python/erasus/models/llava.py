"""LLaVA (Liu et al., "Visual Instruction Tuning", NeurIPS 2023): a CLIP vision tower, a 2-layer MLP
projector and a causal LM, as transformers' ``LlavaForConditionalGeneration``.

:class:`LLaVAWrapper` exposes the three parts as parameter groups (``vision_tower``,
``multi_modal_projector``, ``language_model``), so a strategy can unlearn an image-grounded answer in the
language model only, or the projector only, and builds image + question -> answer batches for
:class:`erasus.tasks.multimodal_lm.MultimodalCausalLMTask` (see :mod:`erasus.models.mllm`).
"""

from __future__ import annotations

import os
from typing import Any

from torch import nn

from ..errors import ErasusTypeError, require
from ..registry import register_model
from .mllm import MultimodalLMWrapper, saved_tokenizer

__all__ = ["LLaVAWrapper", "load_llava"]


def load_llava(name_or_path: str | os.PathLike[str], *, device: Any = None, **kwargs: Any) -> tuple[nn.Module, Any]:
    """``(LlavaForConditionalGeneration, processor or None)`` from a local folder or hub id."""
    transformers = require("transformers", "llm", purpose="loading LLaVA models")
    model = transformers.LlavaForConditionalGeneration.from_pretrained(str(name_or_path), **kwargs)
    try:
        processor = transformers.AutoProcessor.from_pretrained(str(name_or_path))
    except (OSError, ValueError, TypeError):
        processor = None  # weights without a saved processor: pass tokenizer= and preprocessed images
    if device is not None:
        model = model.to(device)
    return model.eval(), processor


def _part(model: nn.Module, name: str) -> nn.Module:
    # transformers >= 4.52 nests the parts under model.model; older versions keep them on the top module
    inner = getattr(model, "model", None)
    part = getattr(inner, name, None) if isinstance(inner, nn.Module) else None
    return part if isinstance(part, nn.Module) else getattr(model, name)


@register_model("llava")
class LLaVAWrapper(MultimodalLMWrapper):
    """A LLaVA model with named parts, record encoding and ``generate_with_image``.

    Args:
        model_or_path: a ``LlavaForConditionalGeneration``, or a local folder / hub id of one.
        processor: its ``LlavaProcessor`` (tokenizer + image processor); loaded with a checkpoint path.
        tokenizer: a tokenizer when there is no processor (images must then come preprocessed).
        prompt_template: the conversation format, ``<image>`` and ``{question}`` filled in; LLaVA-1.5's
            ``"USER: <image>\\n{question} ASSISTANT:"`` by default.
        device: move the model there.
    """

    default_prompt_template = "USER: <image>\n{question} ASSISTANT:"

    def __init__(self, model_or_path: Any, *, processor: Any = None, tokenizer: Any = None,
                 prompt_template: str | None = None, device: Any = None) -> None:
        super().__init__()
        if isinstance(model_or_path, LLaVAWrapper):
            processor = processor if processor is not None else model_or_path.processor
            tokenizer = tokenizer if tokenizer is not None else model_or_path.tokenizer
            model_or_path = model_or_path.model
        if isinstance(model_or_path, (str, os.PathLike)):
            path = model_or_path
            model_or_path, loaded = load_llava(model_or_path)
            processor = processor if processor is not None else loaded
            if processor is None and tokenizer is None:
                tokenizer = saved_tokenizer(path)  # a folder saved with its tokenizer but no image processor
        if not (isinstance(model_or_path, nn.Module) and hasattr(model_or_path, "get_image_features")
                and hasattr(getattr(model_or_path, "config", None), "vision_config")
                and any(hasattr(m, "multi_modal_projector") for m in (model_or_path, getattr(model_or_path, "model", None)))):
            raise ErasusTypeError(f"{type(model_or_path).__name__} is not a LLaVA model: expected a transformers "
                                  "LlavaForConditionalGeneration or a path to one")
        self._setup(model_or_path, processor=processor, tokenizer=tokenizer, prompt_template=prompt_template,
                    device=device)

    @property
    def vision_tower(self) -> nn.Module:
        return _part(self.model, "vision_tower")

    @property
    def multi_modal_projector(self) -> nn.Module:
        return _part(self.model, "multi_modal_projector")

    @property
    def language_model(self) -> nn.Module:
        """The decoder stack (embeddings + blocks + final norm); the LM head is :attr:`lm_head`."""
        return _part(self.model, "language_model")

    @property
    def lm_head(self) -> nn.Module:
        return self.model.get_output_embeddings()

    @property
    def num_image_tokens(self) -> int:
        """``(image_size / patch_size)^2`` patch embeddings, plus the CLS one when
        ``vision_feature_select_strategy == "full"`` (LlavaProcessor's count)."""
        cfg = self.model.config
        vision = cfg.vision_config
        size, patch = getattr(vision, "image_size", None), getattr(vision, "patch_size", None)
        if size is None or patch is None:
            return int(cfg.image_seq_length)
        n = (int(size) // int(patch)) ** 2
        return n + 1 if cfg.vision_feature_select_strategy == "full" else n

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """``vision_tower`` / ``multi_modal_projector`` / ``language_model`` (the decoder and its LM head)."""
        return self._groups({"vision_tower": [self.vision_tower], "multi_modal_projector": [self.multi_modal_projector],
                             "language_model": [self.language_model, self.lm_head]}, self.model)
