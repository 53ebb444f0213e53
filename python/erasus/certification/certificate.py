"""The removal certificate: what is guaranteed, for which model and data, and how much budget is left.

A :class:`Certificate` is a frozen record, written as JSON next to the model by
:meth:`erasus.ErasusUnlearner.save` (``certificate.json``). It names the mechanism, the ``(epsilon, delta)``
it certifies, the bound the claim rests on (Guo et al. 2020's accumulated gradient-residual norm, Zhang et
al. 2024's approximation-error bound, or a DP accountant's epsilon), the removals served, the budget left,
and SHA-256 hashes of the model's ``state_dict`` and of the data it applies to, so that a certificate
cannot silently be re-used for other weights or other data.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ErasusTypeError, InvalidInputError

__all__ = ["Certificate", "CertificateMismatchError", "hash_model", "hash_data", "certificate_of"]

FORMAT_VERSION = 1


class CertificateMismatchError(InvalidInputError):
    """A certificate was checked against a model or data it was not issued for (their hashes differ)."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Certificate:
    """A statement of certified removal (or of differential privacy) for one model and one data set.

    Fields:
        mechanism: how the guarantee arises, e.g. ``"guo2020_newton_gaussian"``, ``"zhang2024_newton_lissa"``,
            ``"dp_sgd_group_privacy"``.
        epsilon, delta: the certified ``(epsilon, delta)`` (``delta = 0`` for a pure-epsilon mechanism).
        bound_name, bound_value: the quantity the claim rests on and its value now (e.g. the accumulated
            gradient-residual norm) — ``bound_value <= budget`` is what makes the claim hold.
        budget: the largest ``bound_value`` the noise certifies; ``budget_left = budget - bound_value``.
        removals: samples removed under this certificate so far (for DP: the group size ``g`` covered).
        model_hash, data_hash: SHA-256 of the model's ``state_dict`` and of the data the claim is about
            (:func:`hash_model`, :func:`hash_data`).
        statement: one plain sentence saying what is and is not guaranteed.
        parameters: the mechanism's constants (``lam``, ``sigma``, norm bound ``C`` ...), JSON scalars only.
    """

    mechanism: str
    epsilon: float
    delta: float
    bound_name: str
    bound_value: float
    budget: float
    removals: int
    model_hash: str
    data_hash: str
    statement: str
    parameters: dict[str, Any] = dataclasses.field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        for name in ("epsilon", "delta", "bound_value", "budget"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                raise InvalidInputError(f"Certificate.{name} must be a finite number, got {value!r}")
        if self.epsilon < 0 or not 0 <= self.delta < 1:
            raise InvalidInputError(f"need epsilon >= 0 and 0 <= delta < 1, got ({self.epsilon}, {self.delta})")
        if not isinstance(self.removals, int) or self.removals < 0:
            raise InvalidInputError(f"Certificate.removals must be a non-negative int, got {self.removals!r}")
        for name in ("model_hash", "data_hash"):
            value = getattr(self, name)
            if not (isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)):
                raise InvalidInputError(f"Certificate.{name} must be a SHA-256 hex digest, got {value!r}")
        if self.format_version != FORMAT_VERSION:
            raise InvalidInputError(
                f"certificate format version {self.format_version} is not supported (this erasus reads {FORMAT_VERSION})"
            )
        for key, value in self.parameters.items():
            if not isinstance(value, (int, float, str, bool, type(None))):
                raise InvalidInputError(f"Certificate.parameters[{key!r}] must be a JSON scalar, got {type(value).__name__}")

    @property
    def budget_left(self) -> float:
        """``budget - bound_value``: how much more the bound may grow before the claim stops holding."""
        return self.budget - self.bound_value

    # ------------------------------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "budget_left": self.budget_left}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Certificate:
        if not isinstance(data, dict):
            raise ErasusTypeError(f"a certificate is a JSON object, got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names - {"budget_left"})
        missing = sorted(f.name for f in dataclasses.fields(cls)
                         if f.name not in data and f.default is dataclasses.MISSING
                         and f.default_factory is dataclasses.MISSING)
        if unknown or missing:
            raise InvalidInputError(f"not a certificate: unknown keys {unknown}, missing keys {missing}")
        values = {k: v for k, v in data.items() if k in names}
        values["parameters"] = dict(values.get("parameters") or {})
        return cls(**values)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> Certificate:
        try:
            data = json.loads(text)
        except (TypeError, json.JSONDecodeError) as exc:
            raise InvalidInputError(f"a certificate must be JSON text: {exc}") from None
        return cls.from_dict(data)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the JSON to ``path`` (via a temporary file in the same folder and a rename)."""
        target = Path(path)
        tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(self.to_json())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Certificate:
        return cls.from_json(Path(path).read_text(encoding="utf-8"))


def _update_tensor(h: Any, t: torch.Tensor) -> None:
    t = t.detach().cpu().contiguous()
    h.update(f"{t.dtype}|{tuple(t.shape[1:])}|".encode())
    h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")


def hash_model(model: torch.nn.Module) -> str:
    """SHA-256 over the model's ``state_dict`` (names, dtypes, shapes, bytes; names sorted).

    Identical for a model and its :meth:`~erasus.ErasusUnlearner.load_weights` copy; any changed weight or
    buffer changes it. Non-persistent state (e.g. a certified head's secret noise) is not part of it.
    """
    if not isinstance(model, torch.nn.Module):
        raise ErasusTypeError(f"hash_model needs an nn.Module, got {type(model).__name__}")
    h = hashlib.sha256()
    for name, value in sorted(model.state_dict().items()):
        h.update(name.encode() + b"\0")
        h.update(f"{tuple(value.shape)}".encode())
        _update_tensor(h, value)
    return h.hexdigest()


def hash_data(data: Any) -> str:
    """SHA-256 of a data set's samples in order (tensors of every field: dtype, per-sample shape, bytes).

    Accepts what the strategies accept (``(x, y)`` tensors or arrays, a ``Dataset``, a ``DataLoader``);
    independent of the batch size used to read it.
    """
    from ..data import as_dataset
    from torch.utils.data import DataLoader

    ds = as_dataset(data)
    h = hashlib.sha256()
    h.update(f"n={len(ds)}|".encode())  # type: ignore[arg-type]
    loader = DataLoader(ds, batch_size=1024, shuffle=False,
                        collate_fn=data.collate_fn if isinstance(data, DataLoader) else None)
    fields: dict[str, Any] = {}
    for batch in loader:
        if isinstance(batch, dict):  # e.g. causal-LM batches: one field per key
            parts = {str(k): batch[k] for k in sorted(batch)}
        else:
            parts = {str(i): v for i, v in enumerate(batch if isinstance(batch, (tuple, list)) else (batch,))}
        if not fields:
            fields = {k: hashlib.sha256(k.encode()) for k in parts}
        if parts.keys() != fields.keys():
            raise InvalidInputError("hash_data: batches have varying fields")
        for key, part in parts.items():
            if isinstance(part, np.ndarray):
                part = torch.from_numpy(part)
            if isinstance(part, torch.Tensor):
                _update_tensor(fields[key], part)
            else:  # collated plain values (strings, ints): their repr is deterministic
                fields[key].update(repr(part).encode())
    for fh in fields.values():
        h.update(fh.digest())
    return h.hexdigest()


def certificate_of(*objects: Any) -> Certificate | None:
    """The first ``certificate`` / ``certificate_`` attribute found on ``objects`` (a model, a strategy)."""
    for obj in objects:
        for attr in ("certificate", "certificate_"):
            cert = getattr(obj, attr, None)
            if isinstance(cert, Certificate):
                return cert
    return None
