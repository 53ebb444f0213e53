"""VideoMAE video classifiers behind one interface: :class:`VideoMAEWrapper`.

VideoMAE (Tong et al., "VideoMAE: Masked Autoencoders are Data-Efficient Learners for Self-Supervised Video
Pre-Training", NeurIPS 2022; transformers ``models/videomae/modeling_videomae.py``) splits a clip
``(frames, C, H, W)`` into ``tubelet_size x patch_size x patch_size`` tubes, embeds them with a 3-D convolution
and runs a ViT encoder; ``VideoMAEForVideoClassification`` mean-pools (``use_mean_pooling``) or takes the
first token, and classifies with a linear head.

The wrapper holds the model and its image processor and exposes what strategies, selectors and metrics need:
``forward(pixel_values)`` (so :class:`erasus.tasks.ClassificationTask` drives it on
``{"pixel_values": (B, frames, C, H, W), "labels": (B,)}`` batches), :meth:`VideoMAEWrapper.parameter_groups`
(``embeddings`` / ``encoder`` / ``head``, STYLE 20), :meth:`VideoMAEWrapper.trainable` to unlearn in some groups
only, and :meth:`VideoMAEWrapper.predict` on raw clips.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import ErasusTypeError, InvalidInputError, require
from ..registry import register_model

__all__ = ["VideoMAEWrapper", "is_videomae_config", "load_videomae"]

GROUPS = ("embeddings", "encoder", "head")


def is_videomae_config(path: str | os.PathLike[str]) -> bool:
    """Whether a local folder holds a VideoMAE checkpoint (by its ``config.json`` ``model_type``)."""
    config = Path(path) / "config.json"
    if not config.is_file():
        return False
    try:
        return json.loads(config.read_text()).get("model_type") == "videomae"
    except (OSError, ValueError):
        return False


def load_videomae(path: str | os.PathLike[str], *, device: Any = None, attn_implementation: str = "eager"
                  ) -> tuple[nn.Module, Any]:
    """``(VideoMAEForVideoClassification, image processor or None)`` from a local folder or hub id.

    ``attn_implementation="eager"`` by default for the reason :func:`erasus.models.load_clip` gives: the fused
    CPU attention kernel has no forward-mode derivative, which ``torch.func`` per-sample gradients need.
    """
    transformers = require("transformers", "llm", purpose="loading VideoMAE models")
    try:
        model = transformers.VideoMAEForVideoClassification.from_pretrained(
            str(path), attn_implementation=attn_implementation)
    except OSError as exc:
        raise InvalidInputError(f"could not load a VideoMAE classifier from {str(path)!r}: {exc}") from None
    try:
        processor = transformers.AutoImageProcessor.from_pretrained(str(path))
    except (OSError, ValueError, TypeError):
        processor = None  # weights without a saved processor: clips must come as pixel_values
    if device is not None:
        model = model.to(device)
    return model.eval(), processor


@register_model("videomae")
class VideoMAEWrapper(nn.Module):
    """A ``VideoMAEForVideoClassification`` with its image processor and named parameter groups.

    Args:
        model_or_path: a ``VideoMAEForVideoClassification``, another wrapper, or a local folder / hub id.
        processor: the ``VideoMAEImageProcessor`` that turns raw clips into ``pixel_values``; loaded with the
            checkpoint when a path is given.
        device: move the model there.
        attn_implementation: attention kernel when loading from a path (``"eager"``, see :func:`load_videomae`).

    ``get_model("videomae", model_or_path=...)`` builds one from the registry.
    """

    def __init__(self, model_or_path: Any = None, *, processor: Any = None, device: Any = None,
                 attn_implementation: str = "eager") -> None:
        super().__init__()
        if model_or_path is None:
            raise InvalidInputError("VideoMAEWrapper needs a VideoMAEForVideoClassification or a checkpoint path")
        if isinstance(model_or_path, VideoMAEWrapper):
            processor = processor if processor is not None else model_or_path.processor
            model_or_path = model_or_path.model
        if isinstance(model_or_path, (str, os.PathLike)):
            model_or_path, loaded = load_videomae(model_or_path, device=device, attn_implementation=attn_implementation)
            processor = processor if processor is not None else loaded
        if not (isinstance(model_or_path, nn.Module) and hasattr(model_or_path, "videomae")
                and hasattr(model_or_path, "classifier")):
            raise ErasusTypeError(f"{type(model_or_path).__name__} is not a VideoMAE classifier: expected a "
                                  "transformers VideoMAEForVideoClassification or a path to one")
        self.model = model_or_path
        self.processor = processor
        if device is not None:
            self.to(device)

    @property
    def config(self) -> Any:
        return self.model.config

    @property
    def num_frames(self) -> int:
        return int(self.model.config.num_frames)

    def forward(self, pixel_values: torch.Tensor, labels: torch.Tensor | None = None) -> Any:
        """The model's output (``.logits`` of shape (B, num_labels); ``.loss`` when ``labels`` are given)."""
        cfg = self.model.config
        if not isinstance(pixel_values, torch.Tensor) or pixel_values.ndim != 5:
            shape = tuple(pixel_values.shape) if isinstance(pixel_values, torch.Tensor) else type(pixel_values).__name__
            raise InvalidInputError(f"VideoMAE expects pixel_values (B, frames, C, H, W), got {shape}")
        _, frames, channels, h, w = pixel_values.shape
        if frames != cfg.num_frames or channels != cfg.num_channels or (h, w) != (cfg.image_size, cfg.image_size):
            raise InvalidInputError(
                f"this VideoMAE takes clips of {cfg.num_frames} frames x {cfg.num_channels} channels x "
                f"{cfg.image_size}x{cfg.image_size}, got {frames} x {channels} x {h}x{w}")
        return self.model(pixel_values=pixel_values, labels=labels)

    # ------------------------------------------------------------------------------------- parameter groups
    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """``embeddings`` (tubelet projection + position table) / ``encoder`` (the transformer blocks and the
        encoder's final norm) / ``head`` (``fc_norm`` when mean-pooling, and the classifier): disjoint, covering
        every parameter once."""
        backbone = self.model.videomae
        named = {"embeddings": [backbone.embeddings],
                 "encoder": [backbone.encoder, getattr(backbone, "layernorm", None)],
                 "head": [getattr(self.model, "fc_norm", None), self.model.classifier]}
        seen: set[int] = set()
        groups: dict[str, list[nn.Parameter]] = {}
        for name, parts in named.items():
            groups[name] = []
            for part in parts:
                for p in part.parameters() if isinstance(part, nn.Module) else ():
                    if id(p) not in seen:
                        seen.add(id(p))
                        groups[name].append(p)
        missing = [n for n, p in self.model.named_parameters() if id(p) not in seen]
        if missing:
            raise InvalidInputError(f"parameters outside every group of {type(self.model).__name__}: {missing[:5]}")
        return groups

    def trainable(self, *groups: str) -> "VideoMAEWrapper":
        """Leave only the named groups trainable (``requires_grad``) so a strategy unlearns in them alone;
        ``trainable()`` with no names makes every group trainable again. Returns ``self``."""
        known = self.parameter_groups()
        unknown = [g for g in groups if g not in known]
        if unknown:
            raise InvalidInputError(f"unknown parameter group(s) {unknown}; VideoMAEWrapper has {list(known)}")
        for name, params in known.items():
            for p in params:
                p.requires_grad_(not groups or name in groups)
        return self

    # ------------------------------------------------------------------------------------- raw clips
    def preprocess(self, clips: Any) -> torch.Tensor:
        """``pixel_values`` (B, frames, C, H, W) for ``clips``: a tensor of that shape passes through; a list of
        clips (each a sequence of frames: PIL images or (H, W, C) uint8 arrays) goes through the processor."""
        if isinstance(clips, torch.Tensor):
            return clips.unsqueeze(0) if clips.ndim == 4 else clips
        if isinstance(clips, np.ndarray) and clips.dtype != np.uint8:
            return self.preprocess(torch.from_numpy(np.ascontiguousarray(clips, dtype=np.float32)))
        if self.processor is None:
            raise InvalidInputError("this VideoMAEWrapper has no image processor; pass processor= or give "
                                    "pixel_values tensors (B, frames, C, H, W)")
        if not isinstance(clips, Sequence) and not isinstance(clips, np.ndarray):
            raise ErasusTypeError(f"clips must be a tensor or a list of clips (lists of frames), got {type(clips).__name__}")
        videos = [list(c) for c in clips]
        if not videos or any(len(v) != self.num_frames for v in videos):
            raise InvalidInputError(f"every clip must have {self.num_frames} frames (the model's num_frames), got "
                                    f"{[len(v) for v in videos]}")
        kwargs: dict[str, Any] = {}
        first = videos[0][0]
        if isinstance(first, np.ndarray) and first.ndim == 3:
            kwargs["input_data_format"] = "channels_last"
        return self.processor(videos, return_tensors="pt", **kwargs)["pixel_values"]

    @torch.no_grad()
    def predict(self, clips: Any, *, topk: int = 1) -> torch.Tensor:
        """Predicted class ids for ``clips`` (see :meth:`preprocess`): (B,) for ``topk=1``, else (B, topk) in
        decreasing score. Runs in eval mode and restores the train/eval flags afterwards."""
        n = int(self.model.config.num_labels)
        if not isinstance(topk, int) or not 1 <= topk <= n:
            raise InvalidInputError(f"topk must be an int in [1, {n}] (the number of classes), got {topk!r}")
        pixel_values = self.preprocess(clips)
        device = next(self.model.parameters()).device
        flags = [(m, m.training) for m in self.modules()]
        self.eval()
        try:
            logits = self(pixel_values.to(device)).logits
        finally:
            for m, flag in flags:
                m.training = flag
        top = logits.topk(topk, dim=-1).indices.cpu()
        return top[:, 0] if topk == 1 else top
