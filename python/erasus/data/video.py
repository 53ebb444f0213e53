"""Video classification data from a folder of clips stored as frame stacks.

A clip is either a ``.npy`` file holding its frames — ``(T, H, W)`` (grey) or ``(T, H, W, C)``; ``uint8`` is
scaled to [0, 1], float arrays are taken as they are — or a folder of image frames read with PIL in
sorted file-name order. Labels come from

* a CSV (``clip,label`` header) or JSONL (``{"clip": ..., "label": ...}`` per line) file given as ``labels=``,
  where ``clip`` is the clip's path relative to ``root`` (with or without the ``.npy`` suffix), or
* the clips' parent folder names, ``root/<class>/<clip>`` (the torchvision ``ImageFolder`` convention),

and are integer ids, or class names mapped to ids in sorted order. Every item is
``{"pixel_values": (num_frames, C, H, W) float32, "labels": () int64}``, the layout of
``VideoMAEForVideoClassification``; ``default_collate`` stacks items to ``(B, num_frames, C, H, W)``.

Frame sampling (``sampling=``): ``"uniform"`` takes ``num_frames`` indices spread evenly over the clip,
``linspace(0, T - 1, num_frames)`` truncated to integers (pytorchvideo's ``UniformTemporalSubsample``);
``"stride"`` takes every ``stride``-th frame of the window of ``(num_frames - 1) * stride + 1`` frames centred
in the clip (the fixed-rate sampling of VideoMAE's evaluation, ``frame_sample_rate``). Decoded video files
(``.mp4`` ...) are not read: no decoder (PyAV, decord, ffmpeg) is available to erasus offline; decode them to
frame stacks first.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ..errors import ErasusTypeError, InvalidInputError
from ._records import read_json_lines
from .paths import IMAGE_SUFFIXES

__all__ = ["VideoFolderDataset", "sample_frame_indices"]

Sampling = Literal["uniform", "stride"]


def sample_frame_indices(num_available: int, num_frames: int, *, sampling: Sampling = "uniform", stride: int = 1
                         ) -> np.ndarray:
    """The ``num_frames`` frame indices to read from a clip of ``num_available`` frames (see the module doc)."""
    if not isinstance(num_frames, int) or num_frames < 1:
        raise InvalidInputError(f"num_frames must be a positive int, got {num_frames!r}")
    if num_available < 1:
        raise InvalidInputError("a clip must have at least one frame")
    if sampling == "uniform":
        if num_available < num_frames:
            raise InvalidInputError(f"uniform sampling of {num_frames} frames needs a clip of at least {num_frames} "
                                    f"frames, got {num_available}")
        return np.linspace(0, num_available - 1, num_frames).astype(np.int64)
    if sampling == "stride":
        if not isinstance(stride, int) or stride < 1:
            raise InvalidInputError(f"stride must be a positive int, got {stride!r}")
        window = (num_frames - 1) * stride + 1
        if num_available < window:
            raise InvalidInputError(f"{num_frames} frames at stride {stride} need a clip of at least {window} frames, "
                                    f"got {num_available}")
        start = (num_available - window) // 2
        return start + stride * np.arange(num_frames, dtype=np.int64)
    raise InvalidInputError(f"sampling must be 'uniform' or 'stride', got {sampling!r}")


def _frames_of(folder: Path) -> list[Path]:
    return sorted(f for f in folder.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)


def _is_clip(path: Path) -> bool:
    return (path.is_file() and path.suffix.lower() == ".npy") or (path.is_dir() and bool(_frames_of(path)))


class VideoFolderDataset(Dataset):
    """Clips under ``root`` as ``{"pixel_values", "labels"}`` items (see the module docstring).

    Args:
        root: the folder holding the clips.
        num_frames: frames per item (a VideoMAE's ``config.num_frames``).
        labels: a ``.csv`` / ``.jsonl`` file naming each clip's label; ``None``: labels from class folders.
        sampling / stride: how the frames are picked.
        size: resize every frame to ``(H, W)`` (an int: square), antialiased bilinear; ``None`` keeps the size.
        mean / std: per-channel normalisation ``(x - mean) / std`` after scaling to [0, 1] (e.g. the model's
            image processor's ``image_mean`` / ``image_std``).
        channels: convert image frames to 1 (``"L"``) or 3 (``"RGB"``) channels; ``None`` keeps the file's.

    Attributes ``classes`` (sorted class names, or the sorted ids when labels are integers) and ``samples``
    (``(path, label)`` pairs). Every clip's existence, frame count and label are checked when the dataset is
    built, so a bad folder fails at once instead of mid-training.
    """

    def __init__(self, root: str | os.PathLike[str], *, num_frames: int, labels: str | os.PathLike[str] | None = None,
                 sampling: Sampling = "uniform", stride: int = 1, size: int | Sequence[int] | None = None,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                 channels: int | None = None) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise InvalidInputError(f"video root {str(self.root)!r} is not a folder")
        if channels not in (None, 1, 3):
            raise InvalidInputError(f"channels must be 1, 3 or None, got {channels!r}")
        self.num_frames, self.sampling, self.stride, self.channels = num_frames, sampling, stride, channels
        self.size = self._check_size(size)
        self.mean, self.std = self._check_norm(mean, std)
        raw = self._read_labels(Path(labels)) if labels is not None else self._folder_labels()
        if not raw:
            raise InvalidInputError(f"no clips (.npy frame stacks or folders of {sorted(IMAGE_SUFFIXES)} frames) "
                                    f"found under {self.root}")
        values = [v for _, v in raw]
        if all(isinstance(v, int) for v in values):
            if min(values) < 0:
                raise InvalidInputError(f"labels must be non-negative class ids, got {min(values)}")
            self.classes: list[Any] = sorted(set(values))
            self.samples = [(p, int(v)) for p, v in raw]
        else:
            names = [str(v) for v in values]
            self.classes = sorted(set(names))
            index = {c: i for i, c in enumerate(self.classes)}
            self.samples = [(p, index[n]) for (p, _), n in zip(raw, names)]
        for path, _ in self.samples:
            sample_frame_indices(self._length(path), num_frames, sampling=sampling, stride=stride)

    # ------------------------------------------------------------------------------------- building
    @staticmethod
    def _check_size(size: Any) -> tuple[int, int] | None:
        if size is None:
            return None
        hw = (size, size) if isinstance(size, int) else tuple(size)
        if len(hw) != 2 or not all(isinstance(v, int) and v > 0 for v in hw):
            raise InvalidInputError(f"size must be a positive int or (H, W), got {size!r}")
        return (int(hw[0]), int(hw[1]))

    @staticmethod
    def _check_norm(mean: Any, std: Any) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        if (mean is None) != (std is None):
            raise InvalidInputError("give both mean= and std= (per-channel normalisation) or neither")
        if mean is None:
            return None, None
        m = torch.as_tensor(mean, dtype=torch.float32).reshape(-1)
        s = torch.as_tensor(std, dtype=torch.float32).reshape(-1)
        if m.shape != s.shape or not torch.isfinite(m).all() or not bool((s > 0).all()):
            raise InvalidInputError(f"mean and std must be finite per-channel lists of one length with std > 0, "
                                    f"got {list(m.tolist())} and {list(s.tolist())}")
        return m, s

    def _folder_labels(self) -> list[tuple[Path, Any]]:
        out = []
        for cls in sorted(p for p in self.root.iterdir() if p.is_dir()):
            out += [(clip, cls.name) for clip in sorted(cls.iterdir()) if _is_clip(clip)]
        return out

    def _resolve(self, name: str, where: str) -> Path:
        p = self.root / name
        for candidate in (p, p.with_name(p.name + ".npy")):
            if candidate.exists() and _is_clip(candidate):
                return candidate
        raise InvalidInputError(f"{where}: clip {name!r} is not a .npy file or a folder of frames under {self.root}")

    def _read_labels(self, path: Path) -> list[tuple[Path, Any]]:
        if not path.is_file():
            raise InvalidInputError(f"labels file {str(path)!r} does not exist")
        suffix = path.suffix.lower()
        rows: list[tuple[str, Any]] = []
        if suffix == ".csv":
            with path.open(newline="") as fh:
                reader = csv.DictReader(fh)
                if reader.fieldnames is None or not {"clip", "label"} <= set(reader.fieldnames):
                    raise InvalidInputError(f"{path} needs a header with columns 'clip' and 'label', got "
                                            f"{reader.fieldnames}")
                for row in reader:
                    label = row["label"].strip()
                    rows.append((row["clip"].strip(), int(label) if label.lstrip("-").isdigit() else label))
        elif suffix == ".jsonl":
            for n, rec in enumerate(read_json_lines(path, objects=False), 1):
                if not isinstance(rec, dict) or "clip" not in rec or "label" not in rec:
                    raise InvalidInputError(f"{path} record {n} must be an object with 'clip' and 'label'")
                rows.append((str(rec["clip"]), rec["label"]))
        else:
            raise InvalidInputError(f"labels must be a .csv or .jsonl file, got {path.name!r}")
        out = []
        for i, (name, label) in enumerate(rows):
            if isinstance(label, bool) or not isinstance(label, (int, str)) or label == "":
                raise InvalidInputError(f"{path} row {i + 1}: label must be a class id or name, got {label!r}")
            out.append((self._resolve(name, f"{path} row {i + 1}"), label))
        return out

    def _length(self, path: Path) -> int:
        if path.is_dir():
            return len(_frames_of(path))
        try:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise InvalidInputError(f"cannot read clip {path} as a .npy array: {exc}") from None
        if arr.ndim not in (3, 4):
            raise InvalidInputError(f"clip {path} has shape {arr.shape}; expected (T, H, W) or (T, H, W, C)")
        return int(arr.shape[0])

    # ------------------------------------------------------------------------------------- reading
    def __len__(self) -> int:
        return len(self.samples)

    def _read(self, path: Path, idx: np.ndarray) -> torch.Tensor:
        if path.is_dir():
            from PIL import Image

            frames = _frames_of(path)
            arrays = []
            for i in idx:
                with Image.open(frames[i]) as img:
                    if self.channels is not None:
                        img = img.convert("L" if self.channels == 1 else "RGB")
                    arrays.append(np.asarray(img))
            shapes = {a.shape for a in arrays}
            if len(shapes) != 1:
                raise InvalidInputError(f"the frames of {path} differ in size or mode: {sorted(shapes)}")
            arr = np.stack(arrays)
        else:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)[idx]
        if arr.ndim == 3:
            arr = arr[..., None]
        if arr.dtype == np.uint8:
            x = torch.from_numpy(np.ascontiguousarray(arr)).float().div_(255.0)
        elif np.issubdtype(arr.dtype, np.floating):
            x = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
            if not torch.isfinite(x).all():
                raise InvalidInputError(f"clip {path} holds NaN or inf values")
        else:
            raise ErasusTypeError(f"clip {path} has dtype {arr.dtype}; expected uint8 or float frames")
        x = x.permute(0, 3, 1, 2).contiguous()  # (T, C, H, W)
        if self.channels is not None and x.shape[1] != self.channels:
            if x.shape[1] == 1 and self.channels == 3:
                x = x.expand(-1, 3, -1, -1).contiguous()
            elif x.shape[1] == 3 and self.channels == 1:
                # ITU-R 601 luma, PIL's "L" conversion
                x = (x * torch.tensor([0.299, 0.587, 0.114]).reshape(1, 3, 1, 1)).sum(1, keepdim=True)
            else:
                raise InvalidInputError(f"clip {path} has {x.shape[1]} channels; cannot convert to {self.channels}")
        if self.size is not None and tuple(x.shape[-2:]) != self.size:
            x = F.interpolate(x, size=self.size, mode="bilinear", antialias=True, align_corners=False)
        if self.mean is not None and self.std is not None:
            if self.mean.numel() not in (1, x.shape[1]):
                raise InvalidInputError(f"mean/std have {self.mean.numel()} channels but clip {path} has {x.shape[1]}")
            x = (x - self.mean.reshape(1, -1, 1, 1)) / self.std.reshape(1, -1, 1, 1)
        return x

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        path, label = self.samples[index]
        idx = sample_frame_indices(self._length(path), self.num_frames, sampling=self.sampling, stride=self.stride)
        return {"pixel_values": self._read(path, idx), "labels": torch.tensor(label, dtype=torch.long)}
