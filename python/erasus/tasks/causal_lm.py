"""Causal-LM adapter: prompt/answer pairs, next-token loss on answer tokens only.

A batch is a dict ``{"input_ids": (B, T), "attention_mask": (B, T), "labels": (B, T)}`` where ``labels``
equals ``input_ids`` on answer tokens and ``-100`` on prompt and padding tokens (the Hugging Face
convention). Position ``t`` of the logits predicts token ``t + 1``; the per-sample loss is the mean
negative log-likelihood over that sample's answer tokens (TOFU / OpenUnlearning ``avg_loss``).

:func:`encode_prompt_answer` tokenizes one pair (chat template when the tokenizer has one), and
:func:`pad_encoded` right-pads a list of encodings into a batch; ``erasus.data.llm.LMCollator`` uses both.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from ..errors import ErasusTypeError, InvalidInputError
from .base import Batch, Task, register_task
from .classification import logits_of

__all__ = [
    "IGNORE_INDEX",
    "CausalLMTask",
    "answer_log_likelihood",
    "encode_prompt",
    "encode_prompt_answer",
    "pad_encoded",
    "token_log_probs",
]

IGNORE_INDEX = -100
#: batch entries forwarded to the model besides the tokens (LLaVA / BLIP-2 image inputs)
MULTIMODAL_KEYS = ("pixel_values", "image_sizes")


def _has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def _ids(encoded: Any) -> list[int]:
    if isinstance(encoded, Mapping) or hasattr(encoded, "input_ids"):
        encoded = encoded["input_ids"]
    if isinstance(encoded, torch.Tensor):
        encoded = encoded.reshape(-1).tolist()
    return [int(i) for i in encoded]


def encode_prompt(
    tokenizer: Any, prompt: str, *, chat_template: bool | None = None, system_prompt: str | None = None
) -> list[int]:
    """Token ids of a prompt as the model sees it before the answer (chat template + generation prompt, or
    the raw text with the tokenizer's special tokens). An empty prompt is plain language modelling: no chat
    turn, just BOS when the tokenizer has one."""
    use_chat = _has_chat_template(tokenizer) if chat_template is None else bool(chat_template)
    if use_chat and (prompt or system_prompt):
        if not _has_chat_template(tokenizer):
            raise InvalidInputError("chat_template=True but the tokenizer has no chat_template")
        messages = ([{"role": "system", "content": system_prompt}] if system_prompt else []) + [
            {"role": "user", "content": prompt}
        ]
        prompt_ids = _ids(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True))
    else:
        text = f"{system_prompt}\n{prompt}" if system_prompt else prompt
        prompt_ids = _ids(tokenizer(text, add_special_tokens=True)) if text else []
        bos = getattr(tokenizer, "bos_token_id", None)
        if not prompt_ids and bos is not None:
            # A plain-text sample still needs a first token to condition its first answer token on.
            prompt_ids = [int(bos)]
    return prompt_ids


def encode_prompt_answer(
    tokenizer: Any,
    prompt: str,
    answer: str,
    *,
    max_length: int = 512,
    chat_template: bool | None = None,
    system_prompt: str | None = None,
    add_eos: bool = True,
) -> dict[str, list[int]]:
    """Token ids of ``prompt + answer`` with ``labels = -100`` on the prompt tokens.

    The prompt and the answer are tokenized separately and concatenated, so the boundary is exact even
    when a tokenizer would merge characters across it. ``chat_template=None`` uses the tokenizer's chat
    template when it has one (the prompt becomes a user turn followed by the generation prompt); ``False``
    uses the raw prompt text. Longer pairs keep the prompt's end and the answer's start, at least one
    answer token, within ``max_length``.
    """
    if not isinstance(prompt, str) or not isinstance(answer, str):
        raise ErasusTypeError(f"prompt and answer must be str, got {type(prompt).__name__}/{type(answer).__name__}")
    if max_length < 2:
        raise InvalidInputError(f"max_length must be at least 2 (one prompt and one answer token), got {max_length}")
    prompt_ids = encode_prompt(tokenizer, prompt, chat_template=chat_template, system_prompt=system_prompt)
    answer_ids = _ids(tokenizer(answer, add_special_tokens=False))
    eos = getattr(tokenizer, "eos_token_id", None)
    if add_eos and eos is not None:
        answer_ids = answer_ids + [int(eos)]
    if not answer_ids:
        raise InvalidInputError(f"the answer {answer!r} tokenizes to no tokens; nothing to train or score on")
    if len(prompt_ids) + len(answer_ids) > max_length:
        answer_ids = answer_ids[: max(max_length - len(prompt_ids), 1)]
        keep = max_length - len(answer_ids)
        prompt_ids = prompt_ids[len(prompt_ids) - keep :] if keep > 0 else []
    input_ids = prompt_ids + answer_ids
    labels = [IGNORE_INDEX] * len(prompt_ids) + answer_ids
    return {"input_ids": input_ids, "attention_mask": [1] * len(input_ids), "labels": labels}


def pad_encoded(encoded: Sequence[Mapping[str, Sequence[int]]], *, pad_token_id: int) -> dict[str, torch.Tensor]:
    """Right-pad encodings to the longest one: ``attention_mask = 0`` and ``labels = -100`` on padding."""
    if not encoded:
        raise InvalidInputError("cannot collate an empty list of samples")
    length = max(len(e["input_ids"]) for e in encoded)
    out = {
        "input_ids": torch.full((len(encoded), length), int(pad_token_id), dtype=torch.long),
        "attention_mask": torch.zeros((len(encoded), length), dtype=torch.long),
        "labels": torch.full((len(encoded), length), IGNORE_INDEX, dtype=torch.long),
    }
    for i, e in enumerate(encoded):
        n = len(e["input_ids"])
        out["input_ids"][i, :n] = torch.as_tensor(list(e["input_ids"]), dtype=torch.long)
        out["attention_mask"][i, :n] = torch.as_tensor(list(e.get("attention_mask", [1] * n)), dtype=torch.long)
        out["labels"][i, :n] = torch.as_tensor(list(e.get("labels", e["input_ids"])), dtype=torch.long)
    return out


def token_log_probs(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Shifted per-token label log-probabilities ``log p(y_{t+1} | y_<=t)`` and the answer mask, both (B, T-1)."""
    shift_logits = logits[:, :-1, :]
    shift_labels = labels[:, 1:]
    mask = shift_labels != IGNORE_INDEX
    safe = shift_labels.masked_fill(~mask, 0)
    logp = torch.log_softmax(shift_logits.float(), dim=-1).gather(-1, safe.unsqueeze(-1)).squeeze(-1)
    return logp * mask, mask


def answer_log_likelihood(logits: torch.Tensor, labels: torch.Tensor, *, normalize: bool = False) -> torch.Tensor:
    """Per-sample answer log-likelihood ``sum_t log p(y_t)`` (or its mean over answer tokens), shape (B,)."""
    logp, mask = token_log_probs(logits, labels)
    total = logp.sum(-1)
    if normalize:
        return total / mask.sum(-1).clamp(min=1)
    return total


@register_task("causal_lm")
class CausalLMTask(Task):
    """Any ``AutoModelForCausalLM``: ``loss_i = -(1/|A_i|) sum_{t in A_i} log p(x_t | x_<t)`` over answer tokens A_i.

    ``tokenizer``/``max_length``/``chat_template`` are only needed to build batches from text
    (:meth:`encode`, :meth:`collate`); scoring works on pre-tokenized batches.
    """

    name = "causal_lm"

    def __init__(
        self,
        *,
        tokenizer: Any = None,
        max_length: int = 512,
        chat_template: bool | None = None,
        system_prompt: str | None = None,
    ) -> None:
        if max_length < 2:
            raise InvalidInputError(f"max_length must be at least 2, got {max_length}")
        self.tokenizer = tokenizer
        self.max_length = int(max_length)
        self.chat_template = chat_template
        self.system_prompt = system_prompt

    # -- building batches -------------------------------------------------
    def _require_tokenizer(self) -> Any:
        if self.tokenizer is None:
            raise InvalidInputError("this CausalLMTask has no tokenizer; pass CausalLMTask(tokenizer=...)")
        return self.tokenizer

    def encode(self, prompt: str, answer: str) -> dict[str, list[int]]:
        """One tokenized pair (see :func:`encode_prompt_answer`)."""
        return encode_prompt_answer(
            self._require_tokenizer(),
            prompt,
            answer,
            max_length=self.max_length,
            chat_template=self.chat_template,
            system_prompt=self.system_prompt,
        )

    def collate(self, pairs: Sequence[tuple[str, str]]) -> dict[str, torch.Tensor]:
        """A padded batch from ``(prompt, answer)`` pairs."""
        tok = self._require_tokenizer()
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        if pad is None:
            raise InvalidInputError("the tokenizer has neither a pad_token_id nor an eos_token_id to pad with")
        return pad_encoded([self.encode(p, a) for p, a in pairs], pad_token_id=int(pad))

    # -- the Task protocol ------------------------------------------------
    def _check(self, batch: Batch) -> Mapping[str, Any]:
        if not isinstance(batch, Mapping) or "input_ids" not in batch:
            raise ErasusTypeError(
                f"a causal-LM batch is a dict with input_ids/attention_mask/labels, got {type(batch).__name__}"
            )
        return batch

    def features_input(self, batch: Batch) -> dict[str, torch.Tensor]:
        b = self._check(batch)
        out = {"input_ids": b["input_ids"]}
        # image inputs of multimodal LMs (LLaVA, BLIP-2) travel with the tokens, so any CausalLMTask (the
        # strategies' sequence_log_prob, the LLM metrics) scores an image-grounded answer with its image
        for key in ("attention_mask", *MULTIMODAL_KEYS):
            if b.get(key) is not None:
                out[key] = b[key]
        return out

    def outputs(self, model: torch.nn.Module, batch: Batch) -> torch.Tensor:
        logits = logits_of(model(**self.features_input(batch)))
        if logits.ndim != 3:
            raise InvalidInputError(f"a causal LM must return logits of shape (B, T, V), got {tuple(logits.shape)}")
        return logits

    def labels(self, batch: Batch) -> torch.Tensor:
        b = self._check(batch)
        if b.get("labels") is not None:
            return b["labels"]
        # Plain language modelling: every non-padding token is a target.
        mask = b.get("attention_mask")
        return b["input_ids"] if mask is None else b["input_ids"].masked_fill(mask == 0, IGNORE_INDEX)

    def with_labels(self, batch: Batch, labels: torch.Tensor) -> Batch:
        out = dict(self._check(batch))
        out["labels"] = labels
        return out

    def token_log_probs(self, model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-token answer log-probs and mask, each (B, T-1) (see :func:`token_log_probs`)."""
        logits = self.outputs(model, batch)
        return token_log_probs(logits, self.labels(batch).to(logits.device))

    def log_likelihood(self, model: torch.nn.Module, batch: Batch, *, normalize: bool = False) -> torch.Tensor:
        """Per-sample answer log-likelihood, summed (default) or averaged over answer tokens, shape (B,)."""
        logits = self.outputs(model, batch)
        return answer_log_likelihood(logits, self.labels(batch).to(logits.device), normalize=normalize)

    def per_sample_loss(self, model: torch.nn.Module, batch: Batch) -> torch.Tensor:
        logits = self.outputs(model, batch)
        labels = self.labels(batch).to(logits.device)
        nll = F.cross_entropy(
            logits[:, :-1, :].float().transpose(1, 2), labels[:, 1:], ignore_index=IGNORE_INDEX, reduction="none"
        )
        count = (labels[:, 1:] != IGNORE_INDEX).sum(-1)
        if bool((count == 0).any()):
            raise InvalidInputError("a sample in this batch has no answer tokens (all labels are -100)")
        return nll.sum(-1) / count
