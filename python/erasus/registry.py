"""One decorator registry per kind of component: selectors, strategies, metrics and models.

>>> @register_selector("my_selector")
... class MySelector(Selector): ...
>>> get_selector("my_selector", seed=1)

Registration refuses duplicates; lookup errors list the known names. Built-in components register
themselves when their package is imported; :func:`_load_builtins` imports those packages lazily so
``import erasus`` stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, TypeVar

from .errors import RegistryError

__all__ = [
    "Registry",
    "SELECTORS",
    "STRATEGIES",
    "METRICS",
    "MODELS",
    "register_selector",
    "register_strategy",
    "register_metric",
    "register_model",
    "get_selector",
    "get_strategy",
    "get_metric",
    "get_model",
    "list_selectors",
    "list_strategies",
    "list_metrics",
    "list_models",
    "describe",
    "metric_groups",
]

T = TypeVar("T")


class Registry:
    """Name -> factory mapping for one kind of component."""

    def __init__(self, kind: str, builtin_modules: tuple[str, ...] = ()) -> None:
        self.kind = kind
        self._items: dict[str, Callable[..., Any]] = {}
        self._builtin_modules = builtin_modules
        self._loaded = False

    def register(self, name: str) -> Callable[[T], T]:
        if not isinstance(name, str) or not name:
            raise RegistryError(f"{self.kind} names must be non-empty strings, got {name!r}")

        def decorator(obj: T) -> T:
            if name in self._items:
                raise RegistryError(
                    f"{self.kind} {name!r} is already registered (by {self._items[name]!r}); pick another name"
                )
            self._items[name] = obj  # type: ignore[assignment]
            try:
                obj.registry_name = name  # type: ignore[attr-defined]
            except (AttributeError, TypeError):
                pass
            return obj

        return decorator

    def _load_builtins(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        for module in self._builtin_modules:
            importlib.import_module(module)

    def names(self) -> list[str]:
        self._load_builtins()
        return sorted(self._items)

    def factory(self, name: str) -> Callable[..., Any]:
        self._load_builtins()
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "(none)"
            raise RegistryError(f"unknown {self.kind} {name!r}; known {self.plural}: {known}") from None

    @property
    def plural(self) -> str:
        return self.kind[:-1] + "ies" if self.kind.endswith("y") else self.kind + "s"

    def get(self, name: str, **options: Any) -> Any:
        """``factory(name)(**options)``; an option the factory does not take is named with the ones it does."""
        import inspect

        from .errors import InvalidInputError

        factory = self.factory(name)
        try:
            params = inspect.signature(factory).parameters.values()
        except (TypeError, ValueError):  # a builtin or C callable: let the call itself complain
            params = None
        if params is not None and not any(p.kind is p.VAR_KEYWORD for p in params):
            accepted = sorted(p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD))
            unknown = sorted(set(options) - set(accepted))
            if unknown:
                raise InvalidInputError(f"unknown option(s) {unknown} for {self.kind} {name!r}; its options are: "
                                        f"{', '.join(accepted) or 'none'}")
        return factory(**options)

    def __contains__(self, name: object) -> bool:
        self._load_builtins()
        return name in self._items


SELECTORS = Registry("selector", ("erasus.selectors",))
STRATEGIES = Registry("strategy", ("erasus.strategies",))
METRICS = Registry("metric", ("erasus.metrics",))
MODELS = Registry("model", ("erasus.models",))

register_selector = SELECTORS.register
register_strategy = STRATEGIES.register
register_metric = METRICS.register
register_model = MODELS.register


def get_selector(name: str, **options: Any) -> Any:
    """Instantiate the selector registered as ``name`` with keyword ``options``."""
    return SELECTORS.get(name, **options)


def get_strategy(name: str, **options: Any) -> Any:
    """Instantiate the unlearning strategy registered as ``name``."""
    return STRATEGIES.get(name, **options)


def get_metric(name: str, **options: Any) -> Any:
    """Instantiate the metric registered as ``name``."""
    return METRICS.get(name, **options)


def get_model(name: str, **options: Any) -> Any:
    """Build the model wrapper registered as ``name``."""
    return MODELS.get(name, **options)


def list_selectors() -> list[str]:
    return SELECTORS.names()


def list_strategies() -> list[str]:
    return STRATEGIES.names()


def list_metrics() -> list[str]:
    return METRICS.names()


def list_models() -> list[str]:
    return MODELS.names()


def describe(registry: Registry) -> dict[str, str]:
    """Name -> the first paragraph of its docstring, on one line, for ``erasus list``."""
    out = {}
    for name in registry.names():
        doc = (registry.factory(name).__doc__ or "").strip()
        out[name] = " ".join(doc.split("\n\n")[0].split())
    return out


def metric_groups() -> dict[str, list[str]]:
    """Registered metric names by their ``group`` (forgetting, utility, efficiency, privacy, in that order)."""
    from .metrics.base import GROUPS

    out: dict[str, list[str]] = {g: [] for g in GROUPS}
    for name in METRICS.names():
        out[getattr(METRICS.factory(name), "group", "utility")].append(name)
    return out
