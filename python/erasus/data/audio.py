"""Audio data: a folder of WAV / FLAC clips listed in a transcript CSV or JSONL, read with ``soundfile``.

``AudioFolder(root, "transcripts.csv", speaker_column="speaker")`` reads rows ``path, text[, speaker, ...]``
(``path`` relative to ``root``), resamples every clip to ``sampling_rate`` with ``soxr`` (polyphase
``scipy.signal.resample_poly`` when soxr is missing) and mixes channels down to mono. ``dataset[i]`` is a dict
``{"audio": float32 (n,), "text": str, "speaker": str | None, "index": int}``; ``.for_whisper(processor)``
turns it into the ``{"input_features", "labels"}`` items :class:`erasus.tasks.seq2seq.Seq2SeqTask` takes, and
``.for_classifier(feature_extractor, label_column=...)`` into ``{"input_values", "labels"}`` items for wav2vec2 /
HuBERT classifiers. Every row is checked when the folder is opened (missing file, unreadable header, missing
column), so a bad row fails at once with its line number instead of mid-training.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import ErasusTypeError, InvalidInputError, MissingDependencyError
from ._records import read_json_lines

__all__ = ["AudioFolder", "load_audio", "resample"]

_AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")


def _soundfile() -> Any:
    try:
        import soundfile
    except ImportError:
        raise MissingDependencyError("reading audio needs soundfile; pip install 'erasus[audio]'") from None
    return soundfile


def resample(audio: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """``audio`` (n,) resampled from ``orig_sr`` to ``target_sr`` Hz: soxr's high-quality resampler, or
    ``scipy.signal.resample_poly`` (polyphase, Kaiser window) when soxr is not installed."""
    if orig_sr <= 0 or target_sr <= 0:
        raise InvalidInputError(f"sampling rates must be positive, got {orig_sr} -> {target_sr}")
    if orig_sr == target_sr:
        return audio.astype(np.float32, copy=False)
    try:
        import soxr

        return np.asarray(soxr.resample(audio, orig_sr, target_sr), dtype=np.float32)
    except ImportError:
        from scipy.signal import resample_poly

        g = int(np.gcd(orig_sr, target_sr))
        return resample_poly(audio, target_sr // g, orig_sr // g).astype(np.float32)


def load_audio(path: str | Path, *, sampling_rate: int = 16000) -> np.ndarray:
    """A clip as mono float32 at ``sampling_rate`` (channels averaged)."""
    sf = _soundfile()
    try:
        audio, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, sf.LibsndfileError) as e:  # type: ignore[attr-defined]
        raise InvalidInputError(f"cannot read audio file {path}: {e}") from None
    if audio.shape[0] == 0:
        raise InvalidInputError(f"audio file {path} has no samples")
    mono = audio.mean(axis=1)
    if not np.isfinite(mono).all():
        raise InvalidInputError(f"audio file {path} holds NaN or infinite samples")
    return resample(mono, int(sr), int(sampling_rate))


def _read_rows(table: Path) -> list[dict[str, Any]]:
    if not table.is_file():
        raise InvalidInputError(f"transcript file {table} does not exist")
    if table.suffix == ".csv":
        with open(table, newline="") as f:
            return list(csv.DictReader(f))
    if table.suffix in (".jsonl", ".json"):
        return read_json_lines(table)
    raise InvalidInputError(f"transcripts must be a .csv or .jsonl file, got {table.name}")


class AudioFolder(Dataset):
    """Clips under ``root`` listed in ``transcripts`` (CSV with a header, or JSONL), one row per clip.

    Args:
        root: folder the ``path_column`` entries are relative to (absolute paths are used as they are).
        transcripts: the CSV / JSONL file (relative to ``root`` unless absolute).
        path_column: column of the clip paths.
        text_column: column of the transcripts.
        speaker_column: column of speaker ids (``None``: no speakers).
        sampling_rate: every clip is resampled to this rate.
    """

    def __init__(self, root: str | Path, transcripts: str | Path = "transcripts.csv", *, path_column: str = "path",
                 text_column: str = "text", speaker_column: str | None = "speaker", sampling_rate: int = 16000) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise InvalidInputError(f"audio folder {self.root} does not exist or is not a folder")
        table = Path(transcripts)
        table = table if table.is_absolute() else self.root / table
        rows = _read_rows(table)
        if not rows:
            raise InvalidInputError(f"{table} lists no clips")
        need = [c for c in (path_column, text_column, speaker_column) if c is not None]
        missing = [c for c in need if c not in rows[0]]
        if missing:
            raise InvalidInputError(f"{table} has no column(s) {missing}; its columns are {sorted(rows[0])}")
        if not isinstance(sampling_rate, int) or sampling_rate <= 0:
            raise InvalidInputError(f"sampling_rate must be a positive integer, got {sampling_rate!r}")
        sf = _soundfile()
        self.sampling_rate = sampling_rate
        self.rows, self.paths = [], []
        for n, row in enumerate(rows, start=2 if table.suffix == ".csv" else 1):
            p = Path(str(row[path_column]))
            p = p if p.is_absolute() else self.root / p
            if p.suffix.lower() not in _AUDIO_SUFFIXES:
                raise InvalidInputError(f"{table} row {n}: {p.name} is not a WAV/FLAC/OGG file")
            if not p.is_file():
                raise InvalidInputError(f"{table} row {n}: audio file {p} does not exist")
            try:
                sf.info(str(p))
            except (RuntimeError, sf.LibsndfileError) as e:  # type: ignore[attr-defined]
                raise InvalidInputError(f"{table} row {n}: cannot read {p}: {e}") from None
            text = row[text_column]
            if not isinstance(text, str):
                raise InvalidInputError(f"{table} row {n}: the transcript must be text, got {type(text).__name__}")
            self.paths.append(p)
            self.rows.append(dict(row))
        self.text_column, self.speaker_column = text_column, speaker_column

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def texts(self) -> list[str]:
        return [r[self.text_column] for r in self.rows]

    @property
    def speakers(self) -> list[str] | None:
        return None if self.speaker_column is None else [str(r[self.speaker_column]) for r in self.rows]

    def column(self, name: str) -> list[Any]:
        if name not in self.rows[0]:
            raise InvalidInputError(f"no column {name!r}; columns are {sorted(self.rows[0])}")
        return [r[name] for r in self.rows]

    def __getitem__(self, i: int) -> dict[str, Any]:
        if not isinstance(i, (int, np.integer)):
            raise ErasusTypeError(f"AudioFolder indices are integers, got {type(i).__name__}")
        row = self.rows[i]
        return {"audio": load_audio(self.paths[i], sampling_rate=self.sampling_rate), "text": row[self.text_column],
                "speaker": None if self.speaker_column is None else str(row[self.speaker_column]), "index": int(i)}

    def for_whisper(self, processor: Any, *, indices: Sequence[int] | None = None) -> list[dict[str, torch.Tensor]]:
        """``{"input_features": (mel_bins, frames), "labels": (T,)}`` items: the processor's log-mel features and
        its tokenizer's ids of the transcript, less the leading decoder-start token the model prepends."""
        fe, tok = _parts(processor)
        start = getattr(tok, "convert_tokens_to_ids", lambda _: None)("<|startoftranscript|>")
        out = []
        for i in (range(len(self)) if indices is None else indices):
            item = self[int(i)]
            feats = fe(item["audio"], sampling_rate=self.sampling_rate, return_tensors="pt").input_features[0]
            ids = list(tok(item["text"]).input_ids)
            if ids and start is not None and ids[0] == start:
                ids = ids[1:]
            out.append({"input_features": feats, "labels": torch.tensor(ids, dtype=torch.long)})
        return out

    def for_classifier(self, feature_extractor: Any, *, label_column: str, classes: Sequence[str] | None = None,
                       indices: Sequence[int] | None = None, max_length: int | None = None) -> list[dict[str, torch.Tensor]]:
        """``{"input_values": (n,), "labels": ()}`` items for wav2vec2 / HuBERT classifiers, class ids in the order
        of ``classes`` (default: sorted distinct values of ``label_column``); clips padded / cut to ``max_length``
        samples (default: the longest clip) so they stack."""
        values = [str(v) for v in self.column(label_column)]
        classes = sorted(set(values)) if classes is None else [str(c) for c in classes]
        unknown = sorted(set(values) - set(classes))
        if unknown:
            raise InvalidInputError(f"{label_column!r} has values {unknown[:5]} outside classes {list(classes)[:10]}")
        idx = list(range(len(self))) if indices is None else [int(i) for i in indices]
        audios = [self[i]["audio"] for i in idx]
        n = max(len(a) for a in audios) if max_length is None else int(max_length)
        out = []
        for i, a in zip(idx, audios):
            x = feature_extractor(a, sampling_rate=self.sampling_rate, max_length=n, padding="max_length",
                                  truncation=True, return_tensors="pt").input_values[0]
            out.append({"input_values": x, "labels": torch.tensor(classes.index(values[i]))})
        return out


def _parts(processor: Any) -> tuple[Any, Any]:
    fe = getattr(processor, "feature_extractor", None)
    tok = getattr(processor, "tokenizer", None)
    if fe is None or tok is None:
        raise ErasusTypeError("for_whisper needs a processor with .feature_extractor and .tokenizer "
                              "(a WhisperProcessor or an erasus.models.WhisperWrapper)")
    return fe, tok
