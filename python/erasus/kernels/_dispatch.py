"""Backend choice and argument checks shared by every kernel entry point."""

from __future__ import annotations

import importlib.util
import math
import os
from collections.abc import Sequence

import torch

from ..errors import ErasusTypeError, InvalidInputError, MissingDependencyError

__all__ = ["check_seed", "resolve_backend", "triton_available", "interpreting", "check_tensor_lists", "check_finite_scalar"]

_BACKENDS = ("auto", "triton", "torch")


def triton_available() -> bool:
    """True when triton can be imported (checked without importing it)."""
    return importlib.util.find_spec("triton") is not None


def interpreting() -> bool:
    """True when Triton kernels run in the CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def resolve_backend(backend: str, tensors: Sequence[torch.Tensor]) -> str:
    """Map ``"auto" | "triton" | "torch"`` to the backend that will run.

    ``auto`` picks Triton when every tensor is on CUDA and triton is importable, torch otherwise.
    ``triton`` on CPU tensors only works in the interpreter (``TRITON_INTERPRET=1``).
    """
    if backend not in _BACKENDS:
        raise InvalidInputError(f"backend must be one of {_BACKENDS}, got {backend!r}")
    if backend == "torch":
        return "torch"
    on_cuda = len(tensors) > 0 and all(t.is_cuda for t in tensors)
    if backend == "auto":
        return "triton" if on_cuda and triton_available() else "torch"
    if not triton_available():
        raise MissingDependencyError(
            "backend='triton' needs the triton package; install it with `pip install 'erasus-unlearn[gpu]'`"
        )
    if not on_cuda and not interpreting():
        devices = sorted({str(t.device) for t in tensors})
        raise InvalidInputError(
            f"backend='triton' needs CUDA tensors (got tensors on {devices}); move them to a GPU, use "
            "backend='torch', or set TRITON_INTERPRET=1 before importing triton to run the kernels on CPU"
        )
    return "triton"


def check_tensor_lists(name: str, reference: Sequence[torch.Tensor], *others: tuple[str, Sequence]) -> None:
    """Each list in ``others`` must pair one-to-one (same shape, device) with ``reference``; all floating point."""
    if isinstance(reference, torch.Tensor) or not isinstance(reference, Sequence):
        raise ErasusTypeError(f"{name} must be a list of tensors, got {type(reference).__name__}")
    for i, t in enumerate(reference):
        if not isinstance(t, torch.Tensor):
            raise ErasusTypeError(f"{name}[{i}] must be a torch.Tensor, got {type(t).__name__}")
        if not t.is_floating_point():
            raise ErasusTypeError(f"{name}[{i}] must be floating point, got {t.dtype}")
    for other_name, other in others:
        if isinstance(other, torch.Tensor) or not isinstance(other, Sequence):
            raise ErasusTypeError(f"{other_name} must be a list of tensors, got {type(other).__name__}")
        if len(other) != len(reference):
            raise InvalidInputError(
                f"{other_name} has {len(other)} tensors but {name} has {len(reference)}; they must pair one-to-one"
            )
        for i, (r, o) in enumerate(zip(reference, other)):
            if o is None:
                continue
            if not isinstance(o, torch.Tensor):
                raise ErasusTypeError(f"{other_name}[{i}] must be a torch.Tensor, got {type(o).__name__}")
            if not o.is_floating_point():
                raise ErasusTypeError(f"{other_name}[{i}] must be floating point, got {o.dtype}")
            if o.shape != r.shape:
                raise InvalidInputError(
                    f"{other_name}[{i}] has shape {tuple(o.shape)} but {name}[{i}] has {tuple(r.shape)}"
                )
            if o.device != r.device:
                raise InvalidInputError(f"{other_name}[{i}] is on {o.device} but {name}[{i}] is on {r.device}")


def check_finite_scalar(name: str, value: float) -> float:
    """A finite Python/numpy/0-d tensor number as float, else a clear error."""
    try:
        v = float(value)
    except (TypeError, ValueError) as exc:
        raise ErasusTypeError(f"{name} must be a real number, got {type(value).__name__}") from exc
    if not math.isfinite(v):
        raise InvalidInputError(f"{name} must be finite, got {v}")
    return v


def check_seed(seed: int) -> int:
    """A Philox seed: a Python int in [0, 2**63)."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ErasusTypeError(f"seed must be an int, got {type(seed).__name__}")
    if not 0 <= seed < 2**63:
        raise InvalidInputError(f"seed must be in [0, 2**63), got {seed}")
    return seed
