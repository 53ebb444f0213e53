"""Tiny models, tokenizers and toy data, built offline in seconds: what the tests, the examples' ``--tiny`` runs and
a user's own smoke tests train and unlearn.

Every builder seeds torch itself (``seed=``), so one call gives the same initial weights everywhere:

* :func:`word_tokenizer`: a word-level ``PreTrainedTokenizerFast`` trained on the given strings, ids
  ``[PAD]=0, [UNK]=1, <s>=2, </s>=3`` then any extra special tokens (``<image>`` for the multimodal LMs);
* :func:`tiny_gpt2`, :func:`tiny_llama`: 2-layer causal LMs from ``GPT2Config`` / ``LlamaConfig`` (dropout off);
* :func:`tiny_llava` (CLIP vision tower + LLaMA) and :func:`tiny_blip2` (BLIP-2 vision + Q-Former + OPT), whose
  image token is the tokenizer's ``<image>``;
* :func:`colour_squares` / :func:`colour_square_pairs`: noisy single-colour images and their captions, four
  classes a small CLIP (:func:`erasus.models.small_clip`) tells apart after :func:`train_clip`;
* :func:`memorise`: full-batch fine-tuning with a task adapter's loss, the state an unlearning request starts from.

``transformers`` / ``tokenizers`` / ``PIL`` are imported on use (``pip install 'erasus-unlearn[llm]'``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from ..errors import InvalidInputError, require

__all__ = ["COLOURS", "COLOUR_CLASSES", "COLOUR_TEMPLATES", "colour_square_pairs", "colour_squares", "memorise",
           "tiny_blip2", "tiny_gpt2", "tiny_llama", "tiny_llava", "train_clip", "word_tokenizer"]

#: the four classes of :func:`colour_squares` and their RGB colours
COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220), "yellow": (230, 220, 30)}
COLOUR_CLASSES = list(COLOURS)
#: caption templates of :func:`colour_square_pairs` (also zero-shot prompts: ``t.format(class_name)``)
COLOUR_TEMPLATES = ("a photo of a {} square", "a {} square", "{} colour, product photo")
_SPECIALS = ["[PAD]", "[UNK]", "<s>", "</s>"]


def word_tokenizer(texts: Sequence[str], *, extra_special_tokens: Mapping[str, str] | None = None) -> Any:
    """A word-level tokenizer (whitespace + punctuation split) trained on ``texts``, prefixing ``<s>`` like LLaMA's.

    ``extra_special_tokens`` maps attribute names to tokens, e.g. ``{"image_token": "<image>"}``: they get the ids
    after the four base specials and become ``tokenizer.image_token`` (``image_token_id``) as LLaVA's processor has.
    """
    if isinstance(texts, str) or not texts or not all(isinstance(t, str) for t in texts):
        raise InvalidInputError("texts must be a non-empty sequence of strings (the tokenizer's training corpus)")
    tokenizers = require("tokenizers", "llm", purpose="training a word-level tokenizer")
    transformers = require("transformers", "llm", purpose="wrapping the tokenizer")
    extras = dict(extra_special_tokens or {})
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(unk_token="[UNK]"))
    pre = tokenizers.pre_tokenizers
    tok.pre_tokenizer = pre.Sequence([pre.WhitespaceSplit(), pre.Punctuation()])
    tok.train_from_iterator(list(texts), tokenizers.trainers.WordLevelTrainer(special_tokens=_SPECIALS
                                                                                + list(extras.values())))
    tok.post_processor = tokenizers.processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 2)])
    kwargs: dict[str, Any] = {"extra_special_tokens": extras} if extras else {}
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]",
                                                bos_token="<s>", eos_token="</s>", **kwargs)


def tiny_gpt2(vocab_size: int, *, width: int = 32, layers: int = 2, heads: int = 2, seed: int = 0) -> nn.Module:
    """A randomly initialised ``GPT2LMHeadModel`` (64 positions, no dropout) in eval mode."""
    transformers = require("transformers", "llm", purpose="building a tiny GPT-2")
    torch.manual_seed(seed)
    cfg = transformers.GPT2Config(n_layer=layers, n_embd=width, n_head=heads, vocab_size=vocab_size, n_positions=64,
                                  bos_token_id=2, eos_token_id=3, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    return transformers.GPT2LMHeadModel(cfg).eval()


def _llama_config(transformers: Any, vocab_size: int, *, width: int, layers: int, heads: int) -> Any:
    return transformers.LlamaConfig(vocab_size=vocab_size, hidden_size=width, intermediate_size=2 * width,
                                    num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads,
                                    max_position_embeddings=64, pad_token_id=0, bos_token_id=2, eos_token_id=3)


def tiny_llama(vocab_size: int, *, width: int = 32, layers: int = 2, heads: int = 2, seed: int = 0) -> nn.Module:
    """A randomly initialised ``LlamaForCausalLM`` (MLP width ``2 * width``, 64 positions) in eval mode."""
    transformers = require("transformers", "llm", purpose="building a tiny LLaMA")
    torch.manual_seed(seed)
    return transformers.LlamaForCausalLM(_llama_config(transformers, vocab_size, width=width, layers=layers,
                                                       heads=heads)).eval()


def _image_token_id(tokenizer: Any) -> int:
    token_id = tokenizer.convert_tokens_to_ids("<image>")
    if token_id is None or token_id == tokenizer.unk_token_id:
        raise InvalidInputError("the tokenizer has no '<image>' token; build it with "
                                "word_tokenizer(texts, extra_special_tokens={'image_token': '<image>'})")
    return int(token_id)


def tiny_llava(tokenizer: Any, *, image_size: int = 16, patch_size: int = 4, seed: int = 0) -> nn.Module:
    """A ``LlavaForConditionalGeneration``: a 2-layer CLIP vision tower (width 16) and a :func:`tiny_llama` text
    model; one image token per patch, ``(image_size // patch_size) ** 2`` of them."""
    transformers = require("transformers", "llm", purpose="building a tiny LLaVA")
    image_token_id = _image_token_id(tokenizer)
    torch.manual_seed(seed)
    vision = transformers.CLIPVisionConfig(image_size=image_size, patch_size=patch_size, hidden_size=16,
                                           intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                                           projection_dim=16)
    text = _llama_config(transformers, len(tokenizer), width=32, layers=2, heads=2)
    config = transformers.LlavaConfig(vision_config=vision.to_dict(), text_config=text.to_dict(),
                                      image_token_id=image_token_id, vision_feature_layer=-1,
                                      image_seq_length=(image_size // patch_size) ** 2, projector_hidden_act="gelu")
    return transformers.LlavaForConditionalGeneration(config).eval()


def tiny_blip2(tokenizer: Any, *, image_size: int = 16, patch_size: int = 4, num_query_tokens: int = 4,
               seed: int = 0) -> nn.Module:
    """A ``Blip2ForConditionalGeneration``: a 1-layer vision encoder and Q-Former (width 16) and a 2-layer OPT
    (width 32); ``num_query_tokens`` image tokens per image."""
    transformers = require("transformers", "llm", purpose="building a tiny BLIP-2")
    image_token_id = _image_token_id(tokenizer)
    torch.manual_seed(seed)
    vision = transformers.Blip2VisionConfig(image_size=image_size, patch_size=patch_size, hidden_size=16,
                                            intermediate_size=32, num_hidden_layers=1, num_attention_heads=2)
    qformer = transformers.Blip2QFormerConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                              intermediate_size=32, encoder_hidden_size=16, vocab_size=len(tokenizer))
    text = transformers.OPTConfig(vocab_size=len(tokenizer), hidden_size=32, ffn_dim=64, num_hidden_layers=2,
                                  num_attention_heads=2, max_position_embeddings=64, word_embed_proj_dim=32,
                                  pad_token_id=0, bos_token_id=2, eos_token_id=3, dropout=0.0, attention_dropout=0.0)
    config = transformers.Blip2Config(vision_config=vision.to_dict(), qformer_config=qformer.to_dict(),
                                      text_config=text.to_dict(), num_query_tokens=num_query_tokens,
                                      image_token_index=image_token_id)
    return transformers.Blip2ForConditionalGeneration(config).eval()


def colour_squares(labels: Sequence[int], *, seed: int, size: int = 20) -> list[Any]:
    """One ``size x size`` RGB PIL image per label: the class colour of :data:`COLOURS` plus N(0, 25^2) pixel noise."""
    from PIL import Image

    if any(not 0 <= int(y) < len(COLOUR_CLASSES) for y in labels):
        raise InvalidInputError(f"labels must lie in [0, {len(COLOUR_CLASSES)}) ({COLOUR_CLASSES}), got {list(labels)}")
    rng = np.random.default_rng(seed)
    out = []
    for y in labels:
        img = np.array(COLOURS[COLOUR_CLASSES[int(y)]], dtype=np.float64)[None, None, :] \
            + rng.normal(0, 25, size=(size, size, 3))
        out.append(Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)))
    return out


def colour_square_pairs(processor: Any, labels: Sequence[int], *, seed: int, text_length: int = 32,
                        with_labels: bool = True) -> list[dict[str, torch.Tensor]]:
    """Per-sample dicts as ``CLIPProcessor`` returns them (``pixel_values`` (3, H, W), ``input_ids`` and
    ``attention_mask`` padded to ``text_length``) of :func:`colour_squares` with a random template's caption, plus
    ``labels`` (for zero-shot accuracy) unless ``with_labels=False``."""
    rng = np.random.default_rng(seed + 1)
    captions = [COLOUR_TEMPLATES[int(rng.integers(len(COLOUR_TEMPLATES)))].format(COLOUR_CLASSES[int(y)])
                for y in labels]
    enc = processor(images=colour_squares(labels, seed=seed), text=captions, padding="max_length",
                    max_length=text_length, truncation=True, return_tensors="pt")
    pairs = [{k: enc[k][i] for k in ("pixel_values", "input_ids", "attention_mask")} for i in range(len(labels))]
    if with_labels:
        for pair, y in zip(pairs, labels):
            pair["labels"] = torch.tensor(y)
    return pairs


def train_clip(model: nn.Module, pairs: Sequence[Mapping[str, torch.Tensor]], *, steps: int, lr: float = 3e-3,
               batch_size: int = 16, seed: int = 0) -> nn.Module:
    """``steps`` Adam steps of CLIP's own symmetric InfoNCE (transformers' ``return_loss=True``) over shuffled
    minibatches of ``pairs``; returns ``model`` in eval mode."""
    from torch.utils.data import DataLoader, default_collate

    if steps <= 0:
        raise InvalidInputError(f"steps must be positive, got {steps}")
    data: Any = list(pairs)  # a list of dicts is a map-style dataset to DataLoader, not to its type stubs
    loader: DataLoader[Any] = DataLoader(data, batch_size=batch_size, shuffle=True,
                                         generator=torch.Generator().manual_seed(seed), collate_fn=default_collate)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    done = 0
    while done < steps:
        for b in loader:
            out = model(pixel_values=b["pixel_values"], input_ids=b["input_ids"], attention_mask=b["attention_mask"],
                        return_loss=True)
            opt.zero_grad()
            out.loss.backward()
            opt.step()
            done += 1
            if done == steps:
                break
    return model.eval()


def memorise(model: nn.Module, batch: Any, *, task: Any, steps: int, lr: float,
             optimizer: Literal["adamw", "adam"] = "adamw") -> nn.Module:
    """``steps`` full-batch optimizer steps on ``task.loss(model, batch)`` (any erasus task adapter: causal-LM,
    multimodal, seq2seq ...), so the model has memorised ``batch``; returns ``model`` in eval mode."""
    if optimizer not in ("adamw", "adam"):
        raise InvalidInputError(f"optimizer must be 'adamw' or 'adam', got {optimizer!r}")
    if steps <= 0:
        raise InvalidInputError(f"steps must be positive, got {steps}")
    make = torch.optim.AdamW if optimizer == "adamw" else torch.optim.Adam
    opt = make(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        task.loss(model, batch).backward()
        opt.step()
    return model.eval()
