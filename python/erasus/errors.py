"""The erasus exception hierarchy.

Every error erasus raises on purpose derives from :class:`ErasusError`, and also from the builtin a
user would naturally catch (``ValueError`` for bad input, ``TypeError`` for wrong types, ``ImportError``
for a missing optional dependency, ``MemoryError`` for a refused allocation). The Rust core's error
enum is mapped onto these classes in one place (``rust/erasus-py/src/errors.rs``).
"""

from __future__ import annotations

__all__ = [
    "ErasusError",
    "InvalidInputError",
    "NonFiniteError",
    "ErasusTypeError",
    "MemoryBudgetError",
    "MissingDependencyError",
    "RegistryError",
    "ConfigError",
    "ErasusWarning",
    "TargetNotReachedWarning",
]


class ErasusError(Exception):
    """Base class of every error erasus raises deliberately."""


class InvalidInputError(ErasusError, ValueError):
    """An argument has the right type but a wrong value or shape (k > n, empty features, bad option)."""


class NonFiniteError(InvalidInputError):
    """Features or weights contain NaN or infinity."""


class ErasusTypeError(ErasusError, TypeError):
    """An argument has a type erasus cannot use (e.g. integer features, a non-tensor batch)."""


class MemoryBudgetError(ErasusError, MemoryError):
    """An algorithm would need more memory than allowed; the message says how much and what to do."""


class MissingDependencyError(ErasusError, ImportError):
    """An optional dependency is missing; the message names the extra to install."""


class RegistryError(ErasusError, KeyError):
    """An unknown or duplicate name in a selector/strategy/metric/model registry."""

    def __str__(self) -> str:  # KeyError would repr() the message and add quotes
        return str(self.args[0]) if self.args else ""


class ConfigError(InvalidInputError):
    """A configuration (dict or YAML) has an unknown key or an invalid value."""


def require(module: str, extra: str, *, purpose: str = ""):
    """Import an optional dependency or raise :class:`MissingDependencyError` naming the extra."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        what = f" for {purpose}" if purpose else ""
        raise MissingDependencyError(
            f"{module!r} is required{what}; install it with `pip install 'erasus-unlearn[{extra}]'`"
        ) from exc


class ErasusWarning(UserWarning):
    """Base class of every warning erasus issues deliberately."""


class TargetNotReachedWarning(ErasusWarning):
    """An ``until=`` stopping rule hit its step cap before the probe met the target."""
