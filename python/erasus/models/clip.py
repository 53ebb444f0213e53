"""CLIP-family dual encoders behind one interface: :class:`CLIPWrapper`.

It wraps

* a transformers ``CLIPModel`` (or a local folder / hub id of one, loaded with its ``CLIPProcessor``),
* a pair ``(CLIPVisionModelWithProjection, CLIPTextModelWithProjection)``,
* an ``open_clip`` model (``open_clip.CLIP`` / ``CustomTextCLIP``: ``encode_image``, ``encode_text``, ``visual``,
  ``logit_scale``; erasus' ``vlm`` extra installs ``open-clip-torch``). Its model objects are recognised by duck
  typing, so wrapping one never imports open_clip (nor its torchvision / timm dependencies).

and exposes what strategies and metrics need: ``get_image_features`` / ``get_text_features`` returning projected
embedding tensors (so :class:`erasus.tasks.ContrastiveTask` is picked for it), :meth:`CLIPWrapper.parameter_groups`
(``vision`` / ``text`` / ``projection`` / ``logit_scale``, STYLE 20) and multi-layer hidden states through forward
hooks (``get_image_features(images, layer_indices=[...])``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ErasusTypeError, InvalidInputError, require
from ..registry import register_model
from ..tasks.contrastive import embedding_of

__all__ = ["CLIPWrapper", "character_clip_tokenizer", "clip_parameter_groups", "is_clip_config", "load_clip", "small_clip"]

GROUPS = ("vision", "text", "projection", "logit_scale")


def _is_open_clip(model: nn.Module) -> bool:
    return all(hasattr(model, a) for a in ("encode_image", "encode_text", "visual", "logit_scale"))


def _is_hf_clip(model: nn.Module) -> bool:
    return all(hasattr(model, a) for a in ("vision_model", "text_model", "visual_projection", "text_projection"))


def is_clip_config(path: str | os.PathLike[str]) -> bool:
    """Whether a local folder or hub id holds a CLIP-family checkpoint (by its ``config.json`` ``model_type``)."""
    folder = Path(path)
    if not (folder / "config.json").is_file():
        return False
    import json

    model_type = json.loads((folder / "config.json").read_text()).get("model_type", "")
    return model_type in ("clip", "clip_vision_model", "clip_text_model", "siglip", "chinese_clip")


def load_clip(name_or_path: str | os.PathLike[str], *, device: Any = None, attn_implementation: str = "eager"
              ) -> tuple[nn.Module, Any]:
    """``(CLIPModel, CLIPProcessor or None)`` from a local folder or hub id (``AutoModel`` by its config).

    ``attn_implementation="eager"`` by default: PyTorch's fused CPU attention kernel has neither a double-backward
    nor a forward-mode derivative, so influence selectors (Hessian-vector products) and ``torch.func`` per-sample
    gradients fail through it; pass ``"sdpa"`` for speed when only first-order methods run.
    """
    transformers = require("transformers", "llm", purpose="loading CLIP models")
    model = transformers.AutoModel.from_pretrained(str(name_or_path), attn_implementation=attn_implementation)
    try:
        processor = transformers.AutoProcessor.from_pretrained(str(name_or_path))
    except (OSError, ValueError, TypeError):
        processor = None  # weights without a saved processor: data must come tokenized
    if device is not None:
        model = model.to(device)
    return model.eval(), processor


def _first(module: nn.Module, names: Sequence[str]) -> Any:
    for n in names:
        obj: Any = module
        for part in n.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                break
        if obj is not None:
            return obj
    return None


@register_model("clip")
class CLIPWrapper(nn.Module):
    """A CLIP-style dual encoder (transformers or open_clip) with named parameter groups.

    Args:
        model_or_path: a ``CLIPModel``, a ``(vision_with_projection, text_with_projection)`` pair, an open_clip
            model, or a local folder / hub id of a CLIP checkpoint.
        processor: the ``CLIPProcessor`` (or tokenizer) that turns images and captions into model inputs;
            loaded with the checkpoint when a path is given.
        device: move the model there.
        attn_implementation: attention kernel when loading from a path (``"eager"``, see :func:`load_clip`).

    ``get_model("clip", model_or_path=...)`` builds one from the registry.
    """

    def __init__(self, model_or_path: Any = None, *, processor: Any = None, device: Any = None,
                 attn_implementation: str = "eager") -> None:
        super().__init__()
        if model_or_path is None:
            raise InvalidInputError("CLIPWrapper needs a CLIP model, a (vision, text) pair or a checkpoint path")
        if isinstance(model_or_path, CLIPWrapper):
            processor = processor if processor is not None else model_or_path.processor
            model_or_path = model_or_path.model
        if isinstance(model_or_path, (str, os.PathLike)):
            model_or_path, loaded = load_clip(model_or_path, device=device, attn_implementation=attn_implementation)
            processor = processor if processor is not None else loaded
        if isinstance(model_or_path, (tuple, list)):
            if len(model_or_path) != 2 or not all(isinstance(m, nn.Module) for m in model_or_path):
                raise ErasusTypeError("a tower pair is (CLIPVisionModelWithProjection, CLIPTextModelWithProjection)")
            vision, text = model_or_path
            if not (hasattr(vision, "visual_projection") and hasattr(text, "text_projection")):
                raise ErasusTypeError(f"expected (CLIPVisionModelWithProjection, CLIPTextModelWithProjection), got "
                                      f"({type(vision).__name__}, {type(text).__name__})")
            self.kind = "towers"
            self.vision_tower, self.text_tower = vision, text
            # the pair was trained without a shared temperature object; CLIP's initial value log(1/0.07)
            scale = getattr(getattr(vision, "config", None), "logit_scale_init_value", 2.6592)
            self.logit_scale = nn.Parameter(torch.tensor(float(scale)))
        elif isinstance(model_or_path, nn.Module) and _is_hf_clip(model_or_path):
            self.kind = "hf"
            self.model = model_or_path
        elif isinstance(model_or_path, nn.Module) and _is_open_clip(model_or_path):
            self.kind = "open_clip"
            self.model = model_or_path
        else:
            raise ErasusTypeError(f"{type(model_or_path).__name__} is not a CLIP model: expected a transformers "
                                  "CLIPModel, a (vision, text) *WithProjection pair, an open_clip model or a path")
        self.processor = processor
        if device is not None:
            self.to(device)

    # ------------------------------------------------------------------------------------- towers
    @property
    def vision_model(self) -> nn.Module:
        if self.kind == "hf":
            return self.model.vision_model
        if self.kind == "towers":
            return self.vision_tower.vision_model
        return self.model.visual

    @property
    def text_model(self) -> nn.Module:
        if self.kind == "hf":
            return self.model.text_model
        if self.kind == "towers":
            return self.text_tower.text_model
        text = getattr(self.model, "text", None)  # open_clip CustomTextCLIP
        return text if isinstance(text, nn.Module) else self.model.transformer

    @property
    def tokenizer(self) -> Any:
        return getattr(self.processor, "tokenizer", self.processor)

    def _logit_scale_param(self) -> nn.Parameter:
        return self.logit_scale if self.kind == "towers" else self.model.logit_scale

    def __getattr__(self, name: str) -> Any:
        if name == "logit_scale":
            modules = self.__dict__.get("_modules", {})
            if "model" in modules:
                return modules["model"].logit_scale
        return super().__getattr__(name)

    # ------------------------------------------------------------------------------------- features
    def _encode_image(self, pixel_values: torch.Tensor) -> torch.Tensor:
        if self.kind == "hf":
            return embedding_of(self.model.get_image_features(pixel_values=pixel_values), kind="image")
        if self.kind == "towers":
            return self.vision_tower(pixel_values=pixel_values).image_embeds
        return self.model.encode_image(pixel_values)

    def _encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        if self.kind == "open_clip":
            return self.model.encode_text(input_ids)  # open_clip finds the EOT token itself; no attention mask
        kwargs = {"input_ids": input_ids}
        if attention_mask is not None:
            kwargs["attention_mask"] = attention_mask
        if self.kind == "hf":
            return embedding_of(self.model.get_text_features(**kwargs), kind="text")
        return self.text_tower(**kwargs).text_embeds

    def _layers(self, tower: str) -> nn.ModuleList:
        root = self.vision_model if tower == "vision" else self.text_model
        layers = _first(root, ("encoder.layers", "transformer.resblocks", "resblocks", "encoder.layer"))
        if not isinstance(layers, nn.ModuleList):
            raise InvalidInputError(f"cannot find the {tower} tower's transformer blocks in {type(root).__name__}")
        return layers

    @contextlib.contextmanager
    def _hooked(self, tower: str, layer_indices: Sequence[int]) -> Iterator[dict[int, torch.Tensor]]:
        layers = self._layers(tower)
        found: dict[int, torch.Tensor] = {}
        handles = []
        for i in layer_indices:
            if not isinstance(i, int) or not -len(layers) <= i < len(layers):
                raise InvalidInputError(f"layer index {i!r} is out of range for a {tower} tower of {len(layers)} blocks")
            idx = i % len(layers)

            def hook(_m: nn.Module, _a: Any, out: Any, i: int = i) -> None:
                found[i] = out[0] if isinstance(out, (tuple, list)) else out

            handles.append(layers[idx].register_forward_hook(hook))
        try:
            yield found
        finally:
            for h in handles:
                h.remove()

    def get_image_features(self, pixel_values: torch.Tensor | None = None, *, images: Any = None,
                           layer_indices: Sequence[int] | None = None) -> Any:
        """Projected image embeddings (B, D); with ``layer_indices`` also the hidden states of those vision
        blocks (forward hooks), returned as ``(embeddings, {index: (B, tokens, width)})``.

        ``images`` (PIL images or arrays) go through the wrapper's processor first.
        """
        pixel_values = self._pixels(pixel_values, images)
        if layer_indices is None:
            return self._encode_image(pixel_values)
        with self._hooked("vision", list(layer_indices)) as found:
            emb = self._encode_image(pixel_values)
        return emb, {i: _batch_first(found[i], pixel_values.shape[0]) for i in layer_indices}

    def get_text_features(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None, *,
                          texts: Sequence[str] | None = None, layer_indices: Sequence[int] | None = None) -> Any:
        """Projected text embeddings (B, D); ``texts`` are tokenized by the processor; ``layer_indices`` as for
        :meth:`get_image_features`."""
        if texts is not None:
            enc = self._tokenize(texts)
            input_ids, attention_mask = enc["input_ids"], enc["attention_mask"]
        if input_ids is None:
            raise InvalidInputError("get_text_features needs input_ids or texts=")
        if layer_indices is None:
            return self._encode_text(input_ids, attention_mask)
        with self._hooked("text", list(layer_indices)) as found:
            emb = self._encode_text(input_ids, attention_mask)
        return emb, {i: _batch_first(found[i], input_ids.shape[0]) for i in layer_indices}

    def forward(self, pixel_values: torch.Tensor, input_ids: torch.Tensor,
                attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The (B, B) image-to-text logits ``s * v t^T`` (as ``CLIPModel``'s ``logits_per_image``)."""
        v = nn.functional.normalize(self._encode_image(pixel_values), dim=-1)
        t = nn.functional.normalize(self._encode_text(input_ids, attention_mask), dim=-1)
        return self._logit_scale_param().exp().clamp(max=100.0) * v @ t.T

    # ------------------------------------------------------------------------------------- inputs
    def _device(self) -> torch.device:
        return next(self.parameters()).device

    def _pixels(self, pixel_values: torch.Tensor | None, images: Any) -> torch.Tensor:
        if images is not None:
            if self.processor is None or not hasattr(self.processor, "image_processor"):
                raise InvalidInputError("images= needs a CLIPProcessor; pass CLIPWrapper(model, processor=...)")
            pixel_values = self.processor(images=images, return_tensors="pt")["pixel_values"].to(self._device())
        if pixel_values is None:
            raise InvalidInputError("get_image_features needs pixel_values or images=")
        return pixel_values

    def _tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        if self.tokenizer is None:
            raise InvalidInputError("texts= needs a tokenizer; pass CLIPWrapper(model, processor=...)")
        enc = self.tokenizer(list(texts), padding=True, truncation=True, return_tensors="pt")
        return {"input_ids": enc["input_ids"].to(self._device()), "attention_mask": enc["attention_mask"].to(self._device())}

    # ------------------------------------------------------------------------------------- groups
    def parameter_groups(self, *, split_projection: bool = False) -> dict[str, list[nn.Parameter]]:
        """``{"vision": [...], "text": [...], "projection": [...], "logit_scale": [...]}``: every parameter once.

        ``split_projection=True`` replaces ``projection`` by ``vision_projection`` and ``text_projection`` (what
        each tower maps into the joint space with), for methods that train one tower with its projection.
        """
        return clip_parameter_groups(self, split_projection=split_projection)

    def task(self, **options: Any) -> Any:
        """A :class:`~erasus.tasks.ContrastiveTask` that tokenizes string class prompts with this processor."""
        from ..tasks.contrastive import ContrastiveTask

        options.setdefault("tokenizer", self.tokenizer)
        return ContrastiveTask(**options)

    def save_pretrained(self, path: str | os.PathLike[str]) -> None:
        """Save the transformers model (and processor) so that ``CLIPWrapper(path)`` loads it back."""
        if self.kind != "hf":
            raise InvalidInputError(f"save_pretrained needs a transformers CLIPModel; this wrapper holds {self.kind}")
        self.model.save_pretrained(path)
        if self.processor is not None:
            self.processor.save_pretrained(path)


def _batch_first(h: torch.Tensor, batch: int) -> torch.Tensor:
    # open_clip's older resblocks run sequence-first (T, B, W)
    if h.ndim == 3 and h.shape[0] != batch and h.shape[1] == batch:
        return h.transpose(0, 1)
    return h


def clip_parameter_groups(model: nn.Module, *, split_projection: bool = False) -> dict[str, list[nn.Parameter]]:
    """Parameter groups of a CLIP-style model (a :class:`CLIPWrapper`, a ``CLIPModel`` or an open_clip model).

    ``vision``: the image tower without its output projection; ``text``: the text tower (token/position
    embeddings, blocks, final norm) without its projection; ``projection``: the two projections into the joint
    space (``split_projection=True``: ``vision_projection`` and ``text_projection``); ``logit_scale``: the
    temperature. Every trainable or frozen parameter falls in exactly one group.
    """
    if hasattr(model, "parameter_groups") and not isinstance(model, CLIPWrapper):
        return model.parameter_groups(split_projection=split_projection)
    wrapper = model if isinstance(model, CLIPWrapper) else CLIPWrapper(model)
    if wrapper.kind == "hf":
        projection_modules = {"vision": wrapper.model.visual_projection, "text": wrapper.model.text_projection}
    elif wrapper.kind == "towers":
        projection_modules = {"vision": wrapper.vision_tower.visual_projection, "text": wrapper.text_tower.text_projection}
    else:
        projection_modules = {"vision": getattr(wrapper.model.visual, "proj", None),
                              "text": getattr(wrapper.model, "text_projection", None)}
    proj_ids: set[int] = set()
    projections: dict[str, list[nn.Parameter]] = {"vision": [], "text": []}
    for tower, m in projection_modules.items():
        params = [m] if isinstance(m, nn.Parameter) else list(m.parameters()) if isinstance(m, nn.Module) else []
        for p in params:
            if id(p) not in proj_ids:
                proj_ids.add(id(p))
                projections[tower].append(p)
    scale = wrapper._logit_scale_param()
    vision_ids = {id(p) for p in wrapper.vision_model.parameters()}
    groups: dict[str, list[nn.Parameter]] = {g: [] for g in GROUPS}
    seen: set[int] = set()
    for p in wrapper.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        if id(p) in proj_ids:
            groups["projection"].append(p)
        elif p is scale:
            groups["logit_scale"].append(p)
        elif id(p) in vision_ids:
            groups["vision"].append(p)
        else:
            groups["text"].append(p)  # open_clip keeps its text tower's pieces on the model itself
    if split_projection:
        del groups["projection"]
        groups["vision_projection"], groups["text_projection"] = projections["vision"], projections["text"]
    else:
        groups["projection"] = projections["vision"] + projections["text"]
    return groups


def character_clip_tokenizer(folder: str | os.PathLike[str] | None = None) -> Any:
    """A ``CLIPTokenizer`` built offline: CLIP's byte-level alphabet with and without ``</w>`` and no merges, so
    every word is spelled out character by character (514 ids: 512 characters, ``<|startoftext|>``,
    ``<|endoftext|>``, which also pads). For small models trained from scratch, where no hub vocabulary exists."""
    import json
    import tempfile

    transformers = require("transformers", "llm", purpose="building a CLIP tokenizer")
    from tokenizers.pre_tokenizers import ByteLevel

    chars = sorted(set(ByteLevel.alphabet()))
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": len(chars) + i for i, c in enumerate(chars)})
    vocab["<|startoftext|>"], vocab["<|endoftext|>"] = len(vocab), len(vocab) + 1
    with tempfile.TemporaryDirectory() if folder is None else contextlib.nullcontext(str(folder)) as d:
        Path(d).mkdir(parents=True, exist_ok=True)
        (Path(d) / "vocab.json").write_text(json.dumps(vocab))
        (Path(d) / "merges.txt").write_text("#version: 0.2\n")
        return transformers.CLIPTokenizer(vocab=str(Path(d) / "vocab.json"), merges=str(Path(d) / "merges.txt"))


def small_clip(*, image_size: int = 32, patch_size: int = 8, channels: int = 3, hidden_size: int = 64,
               num_layers: int = 2, num_heads: int = 4, projection_dim: int = 32, max_text_length: int = 64,
               seed: int = 0) -> tuple[nn.Module, Any]:
    """A randomly initialised ``CLIPModel`` from a small ``CLIPConfig`` and its ``CLIPProcessor`` (the
    character-level :func:`character_clip_tokenizer`, a PIL ``CLIPImageProcessor`` at ``image_size``), built
    without network access, for training from scratch or tests. ``save_pretrained`` both to get a local folder
    that ``CLIPWrapper(path)`` and ``ErasusUnlearner(model_name=path)`` load."""
    transformers = require("transformers", "llm", purpose="building a CLIP model")
    tokenizer = character_clip_tokenizer()
    text = dict(vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
                num_hidden_layers=num_layers, num_attention_heads=num_heads, max_position_embeddings=max_text_length,
                bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id, projection_dim=projection_dim)
    vision = dict(image_size=image_size, patch_size=patch_size, num_channels=channels, hidden_size=hidden_size,
                  intermediate_size=2 * hidden_size, num_hidden_layers=num_layers, num_attention_heads=num_heads,
                  projection_dim=projection_dim)
    config = transformers.CLIPConfig(text_config=text, vision_config=vision, projection_dim=projection_dim)
    # plain attention: torch.func's vmap and forward-mode AD (per-sample gradients, influence HVPs) have no rules
    # for the fused SDPA kernel on CPU, and at this size the fused kernel buys nothing
    config._attn_implementation = "eager"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = transformers.CLIPModel(config)
    image_processor = transformers.CLIPImageProcessorPil(size={"shortest_edge": image_size},
                                                         crop_size={"height": image_size, "width": image_size})
    tokenizer.model_max_length = max_text_length
    processor = transformers.CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer)
    return model.eval(), processor
