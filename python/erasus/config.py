"""Configs are data: frozen, keyword-only dataclasses with dict and YAML round-trips.

Subclass :class:`Config` with ``@dataclass(frozen=True, kw_only=True)`` fields. ``from_dict`` refuses
unknown keys and values outside a ``Literal[...]`` annotation with a :class:`~erasus.errors.ConfigError`
that names the key and the allowed values, so a typo in a YAML file is caught before any work starts.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from pathlib import Path
from typing import Any, ClassVar, Literal, Mapping, TypeVar, get_args, get_origin

from .errors import ConfigError

__all__ = ["Config", "SelectionConfig"]

C = TypeVar("C", bound="Config")


def _check_value(cls_name: str, field: str, annotation: Any, value: Any) -> Any:
    origin = get_origin(annotation)
    if origin is Literal:
        allowed = get_args(annotation)
        if value not in allowed:
            raise ConfigError(f"{cls_name}.{field} = {value!r} is not allowed; expected one of {list(allowed)}")
        return value
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        args = get_args(annotation)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _check_value(cls_name, field, arg, value)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{cls_name}.{field} = {value!r} is invalid")
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{cls_name}.{field} must be true or false, got {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{cls_name}.{field} must be an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{cls_name}.{field} must be a number, got {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{cls_name}.{field} must be a string, got {value!r}")
        return value
    if origin in (tuple, list) and isinstance(value, (list, tuple)):
        return tuple(value)
    if isinstance(annotation, type) and issubclass(annotation, Config) and isinstance(value, Mapping):
        return annotation.from_dict(value)
    return value


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config:
    """Base of every erasus config."""

    kind: ClassVar[str] = "config"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Config):
                value = value.to_dict()
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls: type[C], data: Mapping[str, Any]) -> C:
        if not isinstance(data, Mapping):
            raise ConfigError(f"{cls.__name__} expects a mapping, got {type(data).__name__}")
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise ConfigError(
                f"unknown key(s) {unknown} in {cls.__name__}; allowed keys: {sorted(fields)}"
            )
        kwargs = {name: _check_value(cls.__name__, name, hints[name], value) for name, value in data.items()}
        try:
            return cls(**kwargs)
        except TypeError as exc:  # a required field is missing
            raise ConfigError(f"{cls.__name__}: {exc}") from None

    def to_yaml(self, path: str | os.PathLike[str] | None = None) -> str:
        import yaml

        text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        if path is not None:
            Path(path).write_text(text)
        return text

    @classmethod
    def from_yaml(cls: type[C], source: str | os.PathLike[str]) -> C:
        """Load from a YAML file path or a YAML string (safe loader only)."""
        import yaml

        if _looks_like_path(source):
            path = Path(source)
            if not path.is_file():
                raise ConfigError(f"config file {str(path)!r} does not exist")
            text = path.read_text()
        else:
            text = str(source)
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            where = getattr(exc, "problem_mark", None)
            at = f" at line {where.line + 1}, column {where.column + 1}" if where is not None else ""
            raise ConfigError(f"{cls.__name__}: not valid YAML{at}: {getattr(exc, 'problem', None) or exc}") from None
        if data is None:
            data = {}
        return cls.from_dict(data)

    def replace(self: C, **changes: Any) -> C:
        return self.from_dict({**self.to_dict(), **changes})


def _looks_like_path(source: str | os.PathLike[str]) -> bool:
    if isinstance(source, os.PathLike):
        return True
    return "\n" not in source and ":" not in source and Path(source).suffix in {".yaml", ".yml"}


@dataclasses.dataclass(frozen=True, kw_only=True)
class SelectionConfig(Config):
    """How to pick the coreset: which selector, how large, with which options."""

    kind: ClassVar[str] = "selection"
    method: str = "kcenter"
    prune_ratio: float = 0.1
    seed: int = 0
    options: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if not (0.0 < self.prune_ratio <= 1.0):
            raise ConfigError(f"SelectionConfig.prune_ratio must be in (0, 1], got {self.prune_ratio}")
