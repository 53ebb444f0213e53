"""BERT-style encoder classifiers (BERT, RoBERTa, DistilBERT, DeBERTa ...) as plain ``(x, y)`` classifiers.

:class:`BERTWrapper` is an ``nn.Module`` whose ``forward(input_ids)`` returns ``(B, C)`` logits, the attention
mask being the non-pad tokens. So a tokenized dataset of ``(input_ids, label)`` pairs goes through
:class:`erasus.tasks.ClassificationTask` like any classifier, and every general strategy (gradient ascent,
SCRUB, SSD, SalUn ...) and metric runs on it unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..errors import InvalidInputError, require
from .llm import layer_activations

__all__ = ["BERTWrapper"]


class BERTWrapper(torch.nn.Module):
    """``BERTWrapper(model_name, num_labels=None)``: an ``AutoModelForSequenceClassification`` and its tokenizer.

    ``forward(input_ids)`` -> logits, masking pad tokens; :meth:`tokenize` turns texts (and labels) into the
    ``TensorDataset`` the strategies take; :meth:`get_layer_activations` returns encoder-layer outputs.
    Give ``model=`` and ``tokenizer=`` instead of ``model_name`` to wrap objects already loaded.
    """

    def __init__(self, model_name: str | Path | None = None, *, num_labels: int | None = None,
                 max_length: int = 128, model: torch.nn.Module | None = None, tokenizer: Any = None,
                 device: str | torch.device | None = None, **load_options: Any) -> None:
        super().__init__()
        if (model_name is None) == (model is None):
            raise InvalidInputError("give exactly one of model_name (a hub id or folder) or model= (a loaded model)")
        if not isinstance(max_length, int) or max_length <= 0:
            raise InvalidInputError(f"max_length must be a positive integer, got {max_length!r}")
        if num_labels is not None and (not isinstance(num_labels, int) or num_labels < 2):
            raise InvalidInputError(f"num_labels must be an integer >= 2, got {num_labels!r}")
        if model is None:
            transformers = require("transformers", "llm", purpose="loading BERT-style classifiers")
            opts = dict(load_options)
            if num_labels is not None:
                opts["num_labels"] = num_labels
            model = transformers.AutoModelForSequenceClassification.from_pretrained(str(model_name), **opts)
            tokenizer = transformers.AutoTokenizer.from_pretrained(str(model_name))
        if tokenizer is None:
            raise InvalidInputError("model= needs its tokenizer=")
        if tokenizer.pad_token_id is None:
            raise InvalidInputError("the tokenizer has no pad token; BERTWrapper masks padding by it")
        self.model_name = None if model_name is None else str(model_name)
        self.model = model if device is None else model.to(device)
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.config = model.config  # num_labels is read from here by the classification adapter

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        if input_ids.ndim != 2 or input_ids.dtype.is_floating_point:
            raise InvalidInputError(f"BERTWrapper takes token ids (B, T), got {input_ids.dtype} {tuple(input_ids.shape)}")
        mask = (input_ids != self.tokenizer.pad_token_id).long()
        return self.model(input_ids=input_ids, attention_mask=mask).logits

    def tokenize(self, texts: Sequence[str], labels: Sequence[int] | torch.Tensor | None = None
                 ) -> torch.utils.data.TensorDataset:
        """``TensorDataset(input_ids[, labels])`` padded to the longest text (at most ``max_length`` tokens)."""
        if isinstance(texts, str) or not texts or not all(isinstance(t, str) for t in texts):
            raise InvalidInputError("texts must be a non-empty list of strings")
        ids = self.tokenizer(list(texts), return_tensors="pt", padding=True, truncation=True,
                             max_length=self.max_length)["input_ids"]
        if labels is None:
            return torch.utils.data.TensorDataset(ids)
        y = torch.as_tensor(labels)
        if y.shape != (len(texts),) or y.dtype.is_floating_point:
            raise InvalidInputError(f"labels must be {len(texts)} integer class ids, got {y.dtype} {tuple(y.shape)}")
        n = int(self.config.num_labels)
        if len(y) and (int(y.min()) < 0 or int(y.max()) >= n):
            raise InvalidInputError(f"labels must be in [0, {n}) (the model's num_labels), got {y.min()}..{y.max()}")
        return torch.utils.data.TensorDataset(ids, y.long())

    def get_layer_activations(self, text: str | Sequence[str], layer_indices: Sequence[int]
                              ) -> dict[str, torch.Tensor]:
        """Encoder-layer outputs ``(B, T, H)`` on ``text``, keyed ``"layer_{i}"``."""
        return layer_activations(self.model, self.tokenizer, text, layer_indices)
