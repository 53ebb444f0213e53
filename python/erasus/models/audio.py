"""Loading saved audio models by folder: a Whisper (-> :class:`~erasus.models.WhisperWrapper`) or a wav2vec2 /
HuBERT sequence classifier with its feature extractor. ``ErasusUnlearner(model_name=folder)`` comes here for a
folder whose ``config.json`` names one of those model types."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ..errors import InvalidInputError, require

__all__ = ["load_audio_model"]


def load_audio_model(folder: str | Path, *, device: str | torch.device | None = None) -> tuple[torch.nn.Module, Any]:
    """``(model, processor)``: ``(WhisperWrapper, WhisperProcessor)`` for a Whisper folder, ``(classifier,
    feature extractor)`` for a ``Wav2Vec2ForSequenceClassification`` / ``HubertForSequenceClassification`` one."""
    folder = Path(folder).expanduser()
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as e:
        raise InvalidInputError(f"{folder} holds no readable config.json: {e}") from None
    kind = config.get("model_type")
    if kind == "whisper":
        from .whisper import WhisperWrapper

        wrapper = WhisperWrapper(folder, device=device)
        return wrapper.eval(), wrapper.processor
    if kind in ("wav2vec2", "hubert"):
        transformers = require("transformers", "audio", purpose="wav2vec2 / HuBERT classifiers")
        archs = config.get("architectures") or []
        if not any(a.endswith("ForSequenceClassification") for a in archs):
            raise InvalidInputError(
                f"{folder} holds a {kind} model of architecture {archs}; erasus unlearns its sequence classifiers "
                "(Wav2Vec2ForSequenceClassification / HubertForSequenceClassification)"
            )
        try:
            model = transformers.AutoModelForAudioClassification.from_pretrained(str(folder))
            fe = transformers.AutoFeatureExtractor.from_pretrained(str(folder))
        except OSError as e:
            raise InvalidInputError(f"could not load the {kind} classifier in {folder}: {e}") from None
        return (model.to(device) if device is not None else model).eval(), fe
    raise InvalidInputError(f"{folder} holds a {kind!r} model, not a Whisper / wav2vec2 / HuBERT one")
