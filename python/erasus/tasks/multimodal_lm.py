"""Multimodal causal-LM adapter: image + question -> answer, next-token loss on the answer tokens only.

The batch layout of LLaVA (``LlavaForConditionalGeneration``) and BLIP-2 (``Blip2ForConditionalGeneration``
with a decoder-only language model) in transformers >= 4.47: the prompt's image slot is expanded
into as many ``image_token_id`` tokens as the vision side produces embeddings (LLaVA: one per patch; BLIP-2:
one per Q-Former query), the model scatters the image embeddings into those positions, and the logits line
up with ``input_ids``::

    {"pixel_values": (B, C, H, W), "input_ids": (B, T), "attention_mask": (B, T), "labels": (B, T)}

``labels`` holds the answer tokens and ``-100`` on image, prompt and padding tokens, so the per-sample
loss is the mean answer NLL of :class:`~erasus.tasks.causal_lm.CausalLMTask` and every causal-LM
strategy (NPO, SimNPO, GradDiff, RMU, IdkDPO ...) unlearns image-grounded answers unchanged.
Records are MLLMU-Bench / CLEAR style: ``{"image": ..., "question": str, "answer": str}`` (Liu et al.,
"Protecting Privacy in Multimodal Large Language Models with MLLMU-Bench", NAACL 2025; Dontsov et al.,
"CLEAR: Character Unlearning in Textual and Visual Modalities", 2024).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from ..errors import ErasusTypeError, InvalidInputError
from .base import Batch, register_task
from .causal_lm import IGNORE_INDEX, CausalLMTask, _ids

__all__ = ["IMAGE_SLOT", "MultimodalCausalLMTask", "encode_image_prompt", "encode_image_prompt_answer"]

#: where the image goes in a prompt template; expanded into ``num_image_tokens`` copies of ``image_token_id``
IMAGE_SLOT = "<image>"


def encode_image_prompt(tokenizer: Any, prompt: str, *, image_token_id: int, num_image_tokens: int) -> list[int]:
    """Token ids of a prompt whose ``<image>`` slot becomes ``num_image_tokens`` image tokens.

    The text pieces around the slot are tokenized separately; the tokenizer's special prefix (BOS)
    goes on the first non-empty piece, so ``"USER: <image>\\nQ ASSISTANT:"`` gives ``[BOS, USER:, img x n, Q ...]``
    as ``LlavaProcessor`` does and ``"<image>Question: Q Answer:"`` gives ``[img x n, BOS, Question ...]`` as
    ``Blip2Processor`` does.
    """
    if not isinstance(prompt, str):
        raise ErasusTypeError(f"prompt must be str, got {type(prompt).__name__}")
    if prompt.count(IMAGE_SLOT) != 1:
        raise InvalidInputError(f"the prompt must hold exactly one {IMAGE_SLOT!r} slot, got "
                                f"{prompt.count(IMAGE_SLOT)} in {prompt!r}")
    if num_image_tokens <= 0:
        raise InvalidInputError(f"num_image_tokens must be positive, got {num_image_tokens}")
    before, after = prompt.split(IMAGE_SLOT)
    ids: list[int] = []
    special = True
    for piece in (before, None, after):
        if piece is None:
            ids += [int(image_token_id)] * int(num_image_tokens)
        elif piece:
            ids += _ids(tokenizer(piece, add_special_tokens=special))
            special = False
    return ids


def encode_image_prompt_answer(
    tokenizer: Any,
    prompt: str,
    answer: str,
    *,
    image_token_id: int,
    num_image_tokens: int,
    max_length: int = 512,
    add_eos: bool = True,
) -> dict[str, list[int]]:
    """``prompt (with image tokens) + answer`` ids, ``labels = -100`` on everything but the answer tokens.

    Image tokens are never cut: a prompt that does not leave room for one answer token within
    ``max_length`` is an error; a long answer is truncated.
    """
    if not isinstance(answer, str):
        raise ErasusTypeError(f"answer must be str, got {type(answer).__name__}")
    prompt_ids = encode_image_prompt(tokenizer, prompt, image_token_id=image_token_id,
                                     num_image_tokens=num_image_tokens)
    answer_ids = _ids(tokenizer(answer, add_special_tokens=False))
    eos = getattr(tokenizer, "eos_token_id", None)
    if add_eos and eos is not None:
        answer_ids = answer_ids + [int(eos)]
    if not answer_ids:
        raise InvalidInputError(f"the answer {answer!r} tokenizes to no tokens; nothing to train or score on")
    if len(prompt_ids) >= max_length:
        raise InvalidInputError(f"the prompt is {len(prompt_ids)} tokens ({num_image_tokens} of them image tokens), "
                                f"leaving no room for an answer within max_length={max_length}")
    answer_ids = answer_ids[: max_length - len(prompt_ids)]
    ids = prompt_ids + answer_ids
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": [IGNORE_INDEX] * len(prompt_ids) + answer_ids}


@register_task("multimodal_causal_lm")
class MultimodalCausalLMTask(CausalLMTask):
    """LLaVA / BLIP-2 style models: ``loss_i = -(1/|A_i|) sum_{t in A_i} log p(x_t | image_i, x_<t)`` over the
    answer tokens ``A_i`` of record ``i``; batches must carry ``pixel_values`` (see the module docstring)."""

    name = "multimodal_causal_lm"

    def _check(self, batch: Batch) -> Mapping[str, Any]:
        if not isinstance(batch, Mapping) or "input_ids" not in batch or batch.get("pixel_values") is None:
            kind = sorted(batch) if isinstance(batch, Mapping) else type(batch).__name__
            raise ErasusTypeError(
                f"a multimodal causal-LM batch is a dict with pixel_values/input_ids/attention_mask/labels, got {kind}"
            )
        pv, ids = batch["pixel_values"], batch["input_ids"]
        if isinstance(pv, torch.Tensor) and isinstance(ids, torch.Tensor) and pv.shape[0] != ids.shape[0]:
            raise InvalidInputError(f"pixel_values holds {pv.shape[0]} images but input_ids {ids.shape[0]} sequences")
        return batch

    def collate(self, pairs: Sequence[tuple[str, str]]) -> dict[str, torch.Tensor]:
        raise InvalidInputError("a multimodal batch needs images: build it with erasus.data.mllm.MultimodalLMDataset "
                                "or a model wrapper's encode()")
