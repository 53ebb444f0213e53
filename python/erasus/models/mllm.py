"""What the LLaVA and BLIP-2 wrappers share: a multimodal causal LM (image embeddings scattered into the
language model's image-token positions) behind one interface.

A wrapper is an ``nn.Module`` that forwards to the Hugging Face model, so strategies copy, train and return
it like any model; it adds named :meth:`~MultimodalLMWrapper.parameter_groups` (STYLE 20), turns
MLLMU-Bench / CLEAR records (image + question -> answer) into batches of
:class:`erasus.tasks.multimodal_lm.MultimodalCausalLMTask` (:meth:`~MultimodalLMWrapper.encode`,
:meth:`~MultimodalLMWrapper.dataset`) and answers a question about an image
(:meth:`~MultimodalLMWrapper.generate_with_image`).
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from ..errors import ErasusTypeError, InvalidInputError

__all__ = ["MultimodalLMWrapper"]


def _pad_id(tokenizer: Any) -> int:
    pad = getattr(tokenizer, "pad_token_id", None)
    pad = pad if pad is not None else getattr(tokenizer, "eos_token_id", None)
    if pad is None:
        raise InvalidInputError("the tokenizer has neither a pad_token_id nor an eos_token_id to pad with")
    return int(pad)


def saved_tokenizer(path: Any) -> Any:
    """The tokenizer saved in a checkpoint folder that has no full processor (no image processor), or None."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(path))
    except (OSError, ValueError, TypeError):
        return None


class MultimodalLMWrapper(nn.Module, abc.ABC):
    """Base of :class:`~erasus.models.llava.LLaVAWrapper` and :class:`~erasus.models.blip.BLIP2Wrapper`.

    Subclasses set ``self.model`` (the HF model), ``self.processor`` / ``self.tokenizer`` /
    ``self.image_processor`` and implement :attr:`num_image_tokens` and :meth:`parameter_groups`.
    """

    #: lets :func:`erasus.tasks.infer_task` pick the ``"multimodal_causal_lm"`` adapter
    multimodal_causal_lm: ClassVar[bool] = True
    #: the default prompt; ``{question}`` is filled in, ``<image>`` becomes the image tokens
    default_prompt_template: ClassVar[str] = "<image>{question}"

    model: nn.Module

    def _setup(self, model: nn.Module, *, processor: Any, tokenizer: Any, prompt_template: str | None,
               device: Any) -> None:
        self.model = model
        self.processor = processor
        self.tokenizer = tokenizer if tokenizer is not None else getattr(processor, "tokenizer", None)
        self.image_processor = getattr(processor, "image_processor", None)
        self.prompt_template = prompt_template or self.default_prompt_template
        if "{question}" not in self.prompt_template or self.prompt_template.count("<image>") != 1:
            raise InvalidInputError(f"prompt_template needs one '<image>' and a '{{question}}' field, got "
                                    f"{self.prompt_template!r}")
        if self.image_token_id is None:
            raise InvalidInputError(f"{type(model).__name__}'s config has no image_token_id; erasus needs the "
                                    "image-token layout of transformers >= 4.47 (set config.image_token_id)")
        if device is not None:
            self.to(device)

    # ------------------------------------------------------------------------------------- model
    @property
    def config(self) -> Any:
        return self.model.config

    @property
    def image_token_id(self) -> int | None:
        value = getattr(self.model.config, "image_token_id", None)
        return None if value is None else int(value)

    @property
    @abc.abstractmethod
    def num_image_tokens(self) -> int:
        """How many image-token positions one image fills in ``input_ids``."""

    @abc.abstractmethod
    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Named, disjoint groups covering every parameter once."""

    def forward(self, **inputs: Any) -> Any:
        return self.model(**inputs)

    def get_image_features(self, pixel_values: torch.Tensor, **kwargs: Any) -> Any:
        return self.model.get_image_features(pixel_values=pixel_values, **kwargs)

    def gradient_checkpointing_enable(self, **kwargs: Any) -> None:
        self.model.gradient_checkpointing_enable(**kwargs)

    def gradient_checkpointing_disable(self) -> None:
        self.model.gradient_checkpointing_disable()

    @staticmethod
    def _groups(named: Mapping[str, Sequence[nn.Module | nn.Parameter | None]], everything: nn.Module
                ) -> dict[str, list[nn.Parameter]]:
        """Disjoint groups in the order given (a tied weight goes to the first group that holds it); a parameter
        in no group is an error, so a new sub-module cannot silently escape a modality-specific method."""
        seen: set[int] = set()
        groups: dict[str, list[nn.Parameter]] = {}
        for name, parts in named.items():
            groups[name] = []
            for part in parts:
                params = [part] if isinstance(part, nn.Parameter) else list(part.parameters()) if part is not None else []
                for p in params:
                    if id(p) not in seen:
                        seen.add(id(p))
                        groups[name].append(p)
        missing = [n for n, p in everything.named_parameters() if id(p) not in seen]
        if missing:
            raise InvalidInputError(f"parameters outside every group of {type(everything).__name__}: {missing[:5]}")
        return groups

    # ------------------------------------------------------------------------------------- inputs
    def _require_tokenizer(self) -> Any:
        if self.tokenizer is None:
            raise InvalidInputError(f"this {type(self).__name__} has no tokenizer; pass processor= or tokenizer=")
        return self.tokenizer

    def pixel_values(self, image: Any) -> torch.Tensor:
        """One image as a ``(C, H, W)`` float tensor: a tensor is taken as already preprocessed; anything else
        (a PIL image, an array) goes through the processor's image processor."""
        if isinstance(image, torch.Tensor):
            if image.ndim == 4 and image.shape[0] == 1:
                image = image[0]
            if image.ndim != 3:
                raise InvalidInputError(f"a preprocessed image is a (C, H, W) tensor, got shape {tuple(image.shape)}")
            if not image.is_floating_point():
                raise ErasusTypeError(f"a preprocessed image must be a float tensor, got {image.dtype}")
            if not bool(torch.isfinite(image).all()):
                raise InvalidInputError("the image tensor holds NaN or inf")
            return image
        if self.image_processor is None:
            raise InvalidInputError(f"{type(image).__name__} images need an image processor (pass processor=), or "
                                    "pass preprocessed (C, H, W) float tensors")
        return self.image_processor(images=image, return_tensors="pt")["pixel_values"][0]

    def prompt(self, question: str) -> str:
        if not isinstance(question, str):
            raise ErasusTypeError(f"question must be str, got {type(question).__name__}")
        return self.prompt_template.replace("{question}", question)

    def encode(self, image: Any, question: str, answer: str, *, max_length: int = 512,
               add_eos: bool = True) -> dict[str, torch.Tensor]:
        """One record as a sample of :class:`~erasus.tasks.multimodal_lm.MultimodalCausalLMTask`:
        ``pixel_values`` (C, H, W) and unpadded ``input_ids`` / ``attention_mask`` / ``labels`` (T,)."""
        from ..tasks.multimodal_lm import encode_image_prompt_answer

        enc = encode_image_prompt_answer(self._require_tokenizer(), self.prompt(question), answer,
                                         image_token_id=int(self.image_token_id), num_image_tokens=self.num_image_tokens,
                                         max_length=max_length, add_eos=add_eos)
        out = {k: torch.tensor(v, dtype=torch.long) for k, v in enc.items()}
        out["pixel_values"] = self.pixel_values(image)
        return out

    def dataset(self, records: Sequence[Any], *, max_length: int = 512, add_eos: bool = True) -> Any:
        """An :class:`erasus.data.mllm.MultimodalLMDataset` of ``{"image", "question", "answer"}`` records."""
        from ..data.mllm import MultimodalLMDataset

        return MultimodalLMDataset(records, self, max_length=max_length, add_eos=add_eos)

    @property
    def pad_token_id(self) -> int:
        return _pad_id(self._require_tokenizer())

    def task(self) -> Any:
        from ..tasks.multimodal_lm import MultimodalCausalLMTask

        return MultimodalCausalLMTask(tokenizer=self.tokenizer)

    # ------------------------------------------------------------------------------------- generation
    @torch.no_grad()
    def generate_with_image(self, image: Any, question: str, *, max_new_tokens: int = 32, **generate_kwargs: Any
                            ) -> str:
        """The model's answer to ``question`` about ``image`` (greedy unless ``generate_kwargs`` say otherwise),
        decoded without special tokens."""
        from ..tasks.multimodal_lm import encode_image_prompt

        if max_new_tokens <= 0:
            raise InvalidInputError(f"max_new_tokens must be positive, got {max_new_tokens}")
        tok = self._require_tokenizer()
        ids = encode_image_prompt(tok, self.prompt(question), image_token_id=int(self.image_token_id),
                                  num_image_tokens=self.num_image_tokens)
        device = next(self.model.parameters()).device
        input_ids = torch.tensor([ids], dtype=torch.long, device=device)
        dtype = next(self.model.parameters()).dtype
        pixel_values = self.pixel_values(image)[None].to(device=device, dtype=dtype)
        generate_kwargs.setdefault("do_sample", False)
        generate_kwargs.setdefault("pad_token_id", self.pad_token_id)
        was = self.model.training
        self.model.eval()
        try:
            out = self.model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                                      pixel_values=pixel_values, max_new_tokens=max_new_tokens, **generate_kwargs)
        finally:
            self.model.train(was)
        new = out[0, input_ids.shape[1]:] if out.shape[1] > input_ids.shape[1] else out[0, :0]
        return str(tok.decode(new, skip_special_tokens=True))
