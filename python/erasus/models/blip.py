"""BLIP and BLIP-2 behind erasus' two vision-language interfaces.

* :class:`BLIP2Wrapper` — BLIP-2 (Li et al., "BLIP-2: Bootstrapping Language-Image Pre-training with Frozen
  Image Encoders and Large Language Models", ICML 2023) as transformers' ``Blip2ForConditionalGeneration``
  with a decoder-only language model: ``num_query_tokens`` Q-Former outputs, projected by
  ``language_projection``, fill the image-token positions of the prompt. A multimodal causal LM
  (:class:`erasus.tasks.multimodal_lm.MultimodalCausalLMTask`): NPO, GradDiff, RMU ... unlearn its
  image-grounded answers. Parameter groups ``vision`` / ``qformer`` (with the query tokens) /
  ``language_projection`` / ``language_model``.
* :class:`BLIPWrapper` — BLIP retrieval (Li et al., "BLIP: Bootstrapping Language-Image Pre-training",
  ICML 2022) as ``BlipForImageTextRetrieval``, seen as a dual encoder: ``get_image_features`` =
  ``vision_proj`` of the image [CLS] state, ``get_text_features`` = ``text_proj`` of the unimodal text
  encoder's [CLS] state (the ITC embeddings of ``salesforce/BLIP`` ``models/blip_retrieval.py``), so the
  contrastive task, strategies and retrieval metrics apply; :meth:`BLIPWrapper.itm_scores` is the
  image-text matching head. transformers drops BLIP's learned ITC temperature, so the wrapper adds
  ``logit_scale`` initialised to BLIP's ``temp = 0.07`` (``logit_scale = log(1/0.07)``).
"""

from __future__ import annotations

import math
import os
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ErasusTypeError, InvalidInputError, require
from ..registry import register_model
from .mllm import MultimodalLMWrapper, saved_tokenizer

__all__ = ["BLIP2Wrapper", "BLIPWrapper", "load_blip"]


def load_blip(name_or_path: str | os.PathLike[str], *, kind: str, device: Any = None, **kwargs: Any
              ) -> tuple[nn.Module, Any]:
    """``(model, processor or None)``: ``kind="blip2"`` loads ``Blip2ForConditionalGeneration``,
    ``kind="retrieval"`` ``BlipForImageTextRetrieval``."""
    transformers = require("transformers", "llm", purpose="loading BLIP models")
    classes = {"blip2": "Blip2ForConditionalGeneration", "retrieval": "BlipForImageTextRetrieval"}
    if kind not in classes:
        raise InvalidInputError(f"kind must be one of {sorted(classes)}, got {kind!r}")
    model = getattr(transformers, classes[kind]).from_pretrained(str(name_or_path), **kwargs)
    try:
        processor = transformers.AutoProcessor.from_pretrained(str(name_or_path))
    except (OSError, ValueError, TypeError):
        processor = None
    if device is not None:
        model = model.to(device)
    return model.eval(), processor


@register_model("blip2")
class BLIP2Wrapper(MultimodalLMWrapper):
    """A BLIP-2 model (decoder-only language model) with named parts, record encoding and
    ``generate_with_image``.

    Args:
        model_or_path: a ``Blip2ForConditionalGeneration`` or a local folder / hub id of one; its config needs
            an ``image_token_id`` (``image_token_index``), as checkpoints saved by transformers >= 4.47 have.
        processor: as :class:`~erasus.models.llava.LLaVAWrapper`.
        tokenizer: as :class:`~erasus.models.llava.LLaVAWrapper`.
        device: as :class:`~erasus.models.llava.LLaVAWrapper`.
        prompt_template: ``"<image>Question: {question} Answer:"`` by default (the BLIP-2 VQA prompt).
    """

    default_prompt_template = "<image>Question: {question} Answer:"

    def __init__(self, model_or_path: Any, *, processor: Any = None, tokenizer: Any = None,
                 prompt_template: str | None = None, device: Any = None) -> None:
        super().__init__()
        if isinstance(model_or_path, BLIP2Wrapper):
            processor = processor if processor is not None else model_or_path.processor
            tokenizer = tokenizer if tokenizer is not None else model_or_path.tokenizer
            model_or_path = model_or_path.model
        if isinstance(model_or_path, (str, os.PathLike)):
            path = model_or_path
            model_or_path, loaded = load_blip(model_or_path, kind="blip2")
            processor = processor if processor is not None else loaded
            if processor is None and tokenizer is None:
                tokenizer = saved_tokenizer(path)  # a folder saved with its tokenizer but no image processor
        if not (isinstance(model_or_path, nn.Module)
                and all(hasattr(model_or_path, a) for a in ("qformer", "query_tokens", "language_projection"))):
            raise ErasusTypeError(f"{type(model_or_path).__name__} is not a BLIP-2 model: expected a transformers "
                                  "Blip2ForConditionalGeneration or a path to one")
        if not model_or_path.config.use_decoder_only_language_model:
            raise InvalidInputError("BLIP-2 with an encoder-decoder language model (Flan-T5) is not a causal LM; "
                                    "erasus supports the decoder-only (OPT / LLaMA) variants")
        self._setup(model_or_path, processor=processor, tokenizer=tokenizer, prompt_template=prompt_template,
                    device=device)

    @property
    def vision_model(self) -> nn.Module:
        return self.model.vision_model

    @property
    def qformer(self) -> nn.Module:
        return self.model.qformer

    @property
    def language_projection(self) -> nn.Module:
        return self.model.language_projection

    @property
    def language_model(self) -> nn.Module:
        return self.model.language_model

    @property
    def num_image_tokens(self) -> int:
        return int(self.model.config.num_query_tokens)

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """``vision`` / ``qformer`` (Q-Former + its learned query tokens) / ``language_projection`` /
        ``language_model`` (decoder + LM head)."""
        return self._groups({"vision": [self.vision_model], "qformer": [self.qformer, self.model.query_tokens],
                             "language_projection": [self.language_projection],
                             "language_model": [self.language_model]}, self.model)


@register_model("blip")
class BLIPWrapper(nn.Module):
    """BLIP image-text retrieval as a dual encoder (see the module docstring).

    Args:
        model_or_path: a ``BlipForImageTextRetrieval`` or a local folder / hub id of one.
        processor: its ``BlipProcessor``; loaded with a checkpoint path.
        device: move the model there.
    """

    def __init__(self, model_or_path: Any, *, processor: Any = None, device: Any = None) -> None:
        super().__init__()
        if isinstance(model_or_path, BLIPWrapper):
            processor = processor if processor is not None else model_or_path.processor
            model_or_path = model_or_path.model
        if isinstance(model_or_path, (str, os.PathLike)):
            model_or_path, loaded = load_blip(model_or_path, kind="retrieval")
            processor = processor if processor is not None else loaded
        if not (isinstance(model_or_path, nn.Module)
                and all(hasattr(model_or_path, a) for a in ("vision_model", "text_encoder", "vision_proj",
                                                            "text_proj", "itm_head"))):
            raise ErasusTypeError(f"{type(model_or_path).__name__} is not a BLIP retrieval model: expected a "
                                  "transformers BlipForImageTextRetrieval or a path to one")
        self.model = model_or_path
        self.processor = processor
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        if device is not None:
            self.to(device)

    @property
    def config(self) -> Any:
        return self.model.config

    @property
    def vision_model(self) -> nn.Module:
        return self.model.vision_model

    @property
    def text_model(self) -> nn.Module:
        return self.model.text_encoder

    @property
    def tokenizer(self) -> Any:
        return getattr(self.processor, "tokenizer", self.processor)

    def parameter_groups(self, *, split_projection: bool = False) -> dict[str, list[nn.Parameter]]:
        """``vision`` / ``text`` (the text encoder, whose cross-attention layers only the ITM head uses) /
        ``projection`` (``vision_proj`` + ``text_proj``; split into ``vision_projection`` /
        ``text_projection`` with ``split_projection``) / ``itm_head`` / ``logit_scale``."""
        m = self.model
        proj = ({"vision_projection": list(m.vision_proj.parameters()), "text_projection": list(m.text_proj.parameters())}
                if split_projection else {"projection": [*m.vision_proj.parameters(), *m.text_proj.parameters()]})
        return {"vision": list(m.vision_model.parameters()), "text": list(m.text_encoder.parameters()), **proj,
                "itm_head": list(m.itm_head.parameters()), "logit_scale": [self.logit_scale]}

    def get_image_features(self, pixel_values: torch.Tensor, **_: Any) -> torch.Tensor:
        """``vision_proj(h_CLS)`` of the image (BLIP's ITC image embedding, unnormalised), shape (B, D)."""
        h = self.model.vision_model(pixel_values=pixel_values).last_hidden_state
        return self.model.vision_proj(h[:, 0, :])

    def get_text_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                          **_: Any) -> torch.Tensor:
        """``text_proj(h_CLS)`` of the unimodal text encoder (no image cross-attention), shape (B, D)."""
        h = self.model.text_encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.model.text_proj(h[:, 0, :])

    def forward(self, pixel_values: torch.Tensor, input_ids: torch.Tensor,
                attention_mask: torch.Tensor | None = None, **_: Any) -> torch.Tensor:
        """The (B, B) image->text ITC logits ``exp(logit_scale) * cos(v_i, t_j)``."""
        v = F.normalize(self.get_image_features(pixel_values), dim=-1)
        t = F.normalize(self.get_text_features(input_ids, attention_mask), dim=-1)
        return self.logit_scale.exp() * v @ t.T

    def itm_scores(self, pixel_values: torch.Tensor, input_ids: torch.Tensor,
                   attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``P(match)`` of each (image_i, text_i) pair from the ITM head, shape (B,)."""
        out = self.model(input_ids=input_ids, pixel_values=pixel_values, attention_mask=attention_mask,
                         use_itm_head=True)
        return out.itm_score.softmax(-1)[:, 1]
