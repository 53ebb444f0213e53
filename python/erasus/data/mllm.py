"""Image-grounded question-answer records (MLLMU-Bench / CLEAR style) as batches of
:class:`erasus.tasks.multimodal_lm.MultimodalCausalLMTask`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch.utils.data import Dataset

from ..errors import ErasusTypeError, InvalidInputError
from ..tasks.causal_lm import pad_encoded

__all__ = ["MultimodalLMDataset"]

_QUESTION_KEYS = ("question", "prompt", "query")


def _record(record: Any) -> tuple[Any, str, str]:
    if not isinstance(record, Mapping):
        raise ErasusTypeError(f"a multimodal record is a dict with image/question/answer, got {type(record).__name__}")
    image = record.get("image", record.get("pixel_values"))
    question = next((record[k] for k in _QUESTION_KEYS if k in record), None)
    if image is None or question is None or "answer" not in record:
        raise InvalidInputError(f"a multimodal record needs 'image' (or 'pixel_values'), 'question' and 'answer'; "
                                f"got keys {sorted(record)}")
    return image, str(question), str(record["answer"])


class MultimodalLMDataset(Dataset):
    """Records ``{"image", "question", "answer"}`` encoded by a wrapper (:class:`erasus.models.LLaVAWrapper`,
    :class:`erasus.models.BLIP2Wrapper`): every item is ``{"pixel_values": (C, H, W), "input_ids": (T,),
    "attention_mask": (T,), "labels": (T,)}`` right-padded to the longest record, labels ``-100`` on image,
    prompt and padding tokens. ``image`` is a preprocessed (C, H, W) tensor or anything the wrapper's image
    processor takes (a PIL image)."""

    def __init__(self, records: Sequence[Any], wrapper: Any, *, max_length: int = 512, add_eos: bool = True) -> None:
        if len(records) == 0:
            raise InvalidInputError("MultimodalLMDataset needs at least one record")
        if not hasattr(wrapper, "encode"):
            raise ErasusTypeError(f"wrapper must be a multimodal LM wrapper (LLaVAWrapper, BLIP2Wrapper), got "
                                  f"{type(wrapper).__name__}")
        self.records = list(records)
        encoded = [wrapper.encode(*_record(r), max_length=max_length, add_eos=add_eos) for r in self.records]
        shapes = {tuple(e["pixel_values"].shape) for e in encoded}
        if len(shapes) != 1:
            raise InvalidInputError(f"all images must have one preprocessed shape to batch, got {sorted(shapes)}")
        self.batch = pad_encoded([{k: e[k].tolist() for k in ("input_ids", "attention_mask", "labels")} for e in encoded],
                                 pad_token_id=wrapper.pad_token_id)
        self.batch["pixel_values"] = torch.stack([e["pixel_values"] for e in encoded])

    def __len__(self) -> int:
        return int(self.batch["input_ids"].shape[0])

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {k: v[index] for k, v in self.batch.items()}
