"""Bring your own data and model to ``erasus benchmark``: Python entry points and paths.

A benchmark config names its dataset and model either as a built-in (``digits`` / ``fashion_mnist``,
``small_cnn``) or as an entry point:

* ``"package.module:function"`` — imported like ``python -m`` would (the current folder is searched too);
* ``"path/to/file.py:function"`` — a Python file loaded by path;
* for the dataset only, a ``.npz`` file with arrays ``x_train``, ``y_train``, ``x_test``, ``y_test``.

A dataset function returns ``(x_train, y_train, x_test, y_test)`` (tensors or arrays), or ``(train, test)``
datasets of ``(x, y)`` items, or a dict with those keys; it may take ``seed=``. A model function returns an
untrained ``nn.Module`` and may take ``num_classes=`` and ``input_shape=`` (filled in from the data). Errors
name the entry point and say what was expected.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError

__all__ = ["BUILTIN_DATASETS", "BUILTIN_MODELS", "resolve_entry_point", "load_split", "build_model_from",
           "is_entry_point"]

BUILTIN_DATASETS = ("digits", "fashion_mnist")
BUILTIN_MODELS = ("small_cnn",)

Split = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def is_entry_point(text: str) -> bool:
    """``module:function`` or ``file.py:function`` (a Windows drive letter alone is not one)."""
    head, sep, tail = text.rpartition(":")
    return bool(sep and head and tail and not (len(head) == 1 and tail.startswith(("\\", "/"))))


def resolve_entry_point(spec: str, *, what: str) -> Callable[..., Any]:
    """The callable ``spec`` names (``module:function`` or ``path/to/file.py:function``); ``what`` names the
    config field in errors."""
    if not isinstance(spec, str) or not is_entry_point(spec):
        raise ConfigError(f"{what} {spec!r} is not an entry point; expected 'package.module:function' or "
                          "'path/to/file.py:function'")
    target, _, attr = spec.rpartition(":")
    if target.endswith(".py"):
        path = Path(target).expanduser()
        if not path.is_file():
            raise ConfigError(f"{what} {spec!r}: the file {str(path)!r} does not exist")
        name = f"erasus_user_{abs(hash(str(path.resolve())))}"
        module_spec = importlib.util.spec_from_file_location(name, path)
        if module_spec is None or module_spec.loader is None:
            raise ConfigError(f"{what} {spec!r}: {str(path)!r} cannot be loaded as a Python module")
        module = importlib.util.module_from_spec(module_spec)
        try:
            module_spec.loader.exec_module(module)
        except Exception as exc:
            raise ConfigError(f"{what} {spec!r}: running {str(path)!r} failed: {type(exc).__name__}: {exc}") from exc
    else:
        module = _import(target, what=what, spec=spec)
    if not hasattr(module, attr):
        public = sorted(n for n in vars(module) if not n.startswith("_") and callable(getattr(module, n)))
        raise ConfigError(f"{what} {spec!r}: module {target!r} has no attribute {attr!r}; its functions: {public}")
    fn = getattr(module, attr)
    if not callable(fn):
        raise ConfigError(f"{what} {spec!r}: {attr!r} is a {type(fn).__name__}, not a function")
    return fn  # type: ignore[no-any-return]


def _import(name: str, *, what: str, spec: str) -> Any:
    cwd = os.getcwd()
    added = cwd not in sys.path
    if added:  # `python -m` semantics: a user's own module next to the config imports without installing it
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        raise ConfigError(f"{what} {spec!r}: module {name!r} cannot be imported ({exc}); install it or run from the "
                          "folder that holds it") from exc
    except Exception as exc:
        raise ConfigError(f"{what} {spec!r}: importing {name!r} failed: {type(exc).__name__}: {exc}") from exc
    finally:
        if added and sys.path and sys.path[0] == cwd:
            sys.path.pop(0)


def _kwargs_for(fn: Callable[..., Any], available: Mapping[str, Any]) -> dict[str, Any]:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return {}
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return dict(available)
    return {k: v for k, v in available.items() if k in params}


def _as_tensor(value: Any, *, name: str, spec: str, labels: bool) -> torch.Tensor:
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(np.ascontiguousarray(value))
    if not isinstance(value, torch.Tensor):
        raise ConfigError(f"dataset {spec!r}: {name} is a {type(value).__name__}; expected a tensor or numpy array")
    if labels:
        if value.ndim != 1 or value.dtype.is_floating_point or value.dtype == torch.bool:
            raise ConfigError(f"dataset {spec!r}: {name} must be 1-d integer class ids, got shape "
                              f"{tuple(value.shape)} dtype {value.dtype}")
        return value.long()
    if value.ndim < 2:
        raise ConfigError(f"dataset {spec!r}: {name} must have a sample axis and feature axes, got shape "
                          f"{tuple(value.shape)}")
    return value.float()


def _stack(ds: Any, *, name: str, spec: str) -> tuple[torch.Tensor, torch.Tensor]:
    tensors = getattr(ds, "tensors", None)
    if isinstance(tensors, tuple) and len(tensors) == 2:
        return tensors[0], tensors[1]
    try:
        n = len(ds)
        items = [ds[i] for i in range(n)]
    except Exception as exc:
        raise ConfigError(f"dataset {spec!r}: {name} is not a dataset of (x, y) items: {exc}") from exc
    if not items or not all(isinstance(it, (tuple, list)) and len(it) == 2 for it in items):
        raise ConfigError(f"dataset {spec!r}: {name} must be a non-empty dataset of (x, y) items")
    xs = torch.stack([torch.as_tensor(np.asarray(x)) for x, _ in items])
    ys = torch.as_tensor([int(y) for _, y in items])
    return xs, ys


_EXPECTED = ("(x_train, y_train, x_test, y_test) tensors/arrays, (train, test) datasets of (x, y) items, or a dict "
             "with keys x_train, y_train, x_test, y_test")


def _normalize(out: Any, *, spec: str) -> Split:
    if isinstance(out, Mapping):
        missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in out]
        if missing:
            raise ConfigError(f"dataset {spec!r} returned a dict without {missing}; expected {_EXPECTED}")
        out = (out["x_train"], out["y_train"], out["x_test"], out["y_test"])
    if not isinstance(out, (tuple, list)) or len(out) not in (2, 4):
        what = f"a {len(out)}-tuple" if isinstance(out, (tuple, list)) else f"a {type(out).__name__}"
        raise ConfigError(f"dataset {spec!r} returned {what}; expected {_EXPECTED}")
    if len(out) == 2:
        (xtr, ytr), (xte, yte) = _stack(out[0], name="train", spec=spec), _stack(out[1], name="test", spec=spec)
    else:
        xtr, ytr, xte, yte = out
    xtr = _as_tensor(xtr, name="x_train", spec=spec, labels=False)
    ytr = _as_tensor(ytr, name="y_train", spec=spec, labels=True)
    xte = _as_tensor(xte, name="x_test", spec=spec, labels=False)
    yte = _as_tensor(yte, name="y_test", spec=spec, labels=True)
    if len(xtr) != len(ytr) or len(xte) != len(yte):
        raise ConfigError(f"dataset {spec!r}: {len(xtr)} x_train rows for {len(ytr)} labels, {len(xte)} x_test rows "
                          f"for {len(yte)} labels")
    if len(xtr) == 0 or len(xte) == 0:
        raise ConfigError(f"dataset {spec!r} returned an empty train or test split")
    if xtr.shape[1:] != xte.shape[1:]:
        raise ConfigError(f"dataset {spec!r}: train samples have shape {tuple(xtr.shape[1:])}, test samples "
                          f"{tuple(xte.shape[1:])}")
    if not (torch.isfinite(xtr).all() and torch.isfinite(xte).all()):
        raise ConfigError(f"dataset {spec!r}: the inputs contain NaN or infinity")
    if int(ytr.min()) < 0 or int(yte.min()) < 0:
        raise ConfigError(f"dataset {spec!r}: class ids must be >= 0")
    return xtr, ytr, xte, yte


def check_dataset_spec(spec: str) -> None:
    """Refuse a dataset entry before any work: an unknown name, a missing file, an unimportable entry point."""
    if spec in BUILTIN_DATASETS:
        return
    if not isinstance(spec, str) or not spec:
        raise ConfigError(f"dataset must be a name, an entry point or a path, got {spec!r}")
    if spec.endswith(".npz"):
        if not Path(spec).expanduser().is_file():
            raise ConfigError(f"dataset {spec!r}: no such .npz file")
        return
    if not is_entry_point(spec):
        raise ConfigError(f"dataset {spec!r} is not built in ({', '.join(BUILTIN_DATASETS)}) and is neither an entry "
                          "point ('package.module:function', 'file.py:function') nor a .npz file")
    resolve_entry_point(spec, what="dataset")


def check_model_spec(spec: str) -> None:
    if spec in BUILTIN_MODELS:
        return
    if not isinstance(spec, str) or not is_entry_point(spec):
        raise ConfigError(f"model {spec!r} is not built in ({', '.join(BUILTIN_MODELS)}) and not an entry point "
                          "('package.module:function' or 'file.py:function')")
    resolve_entry_point(spec, what="model")


def load_split(spec: str, *, seed: int = 0) -> Split:
    """``(x_train, y_train, x_test, y_test)`` of a user dataset entry point or ``.npz`` file."""
    if spec.endswith(".npz"):
        try:
            with np.load(Path(spec).expanduser(), allow_pickle=False) as z:
                out: Any = {k: z[k] for k in z.files}
        except (OSError, ValueError) as exc:
            raise ConfigError(f"dataset {spec!r} is not a readable .npz file: {exc}") from None
        return _normalize(out, spec=spec)
    fn = resolve_entry_point(spec, what="dataset")
    return _normalize(fn(**_kwargs_for(fn, {"seed": seed})), spec=spec)


def build_model_from(spec: str, *, num_classes: int, input_shape: tuple[int, ...],
                     options: Mapping[str, Any] | None = None) -> torch.nn.Module:
    """An untrained model from an entry point, given ``num_classes`` / ``input_shape`` when it takes them."""
    fn = resolve_entry_point(spec, what="model")
    kwargs = {**_kwargs_for(fn, {"num_classes": num_classes, "input_shape": tuple(input_shape)}), **(options or {})}
    try:
        model = fn(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"model {spec!r} could not be called with {sorted(kwargs)}: {exc}") from exc
    if not isinstance(model, torch.nn.Module):
        raise ConfigError(f"model {spec!r} returned a {type(model).__name__}; expected a torch.nn.Module")
    return model
