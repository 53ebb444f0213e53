"""The YAML configs of ``erasus unlearn`` / ``evaluate`` / ``benchmark`` (frozen dataclasses, validated).

A model is described by exactly one of ``name`` (a transformers id or folder, loaded as a causal LM),
``builtin: small_cnn`` (erasus' demo CNN) or ``factory: "package.module:callable"`` (any importable function
returning an ``nn.Module``), plus optional ``weights`` (a ``.safetensors`` file or a folder written by
``ErasusUnlearner.save``). Weights are never unpickled.
"""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path
from typing import Any, ClassVar, Literal, Optional

import torch

from ..config import Config
from ..errors import ConfigError

__all__ = ["ModelSpec", "UnlearnConfig", "EvaluateConfig", "build_model"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class ModelSpec(Config):
    kind: ClassVar[str] = "model"
    name: Optional[str] = None
    builtin: Optional[Literal["small_cnn"]] = None
    factory: Optional[str] = None
    options: dict[str, Any] = dataclasses.field(default_factory=dict)
    weights: Optional[str] = None

    def __post_init__(self) -> None:
        given = [k for k in ("name", "builtin", "factory") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ConfigError(f"model needs exactly one of name, builtin or factory; got {given or 'none'}")
        if self.factory is not None and ":" not in self.factory:
            raise ConfigError(f"model.factory must look like 'package.module:callable', got {self.factory!r}")


def build_model(spec: ModelSpec) -> torch.nn.Module:
    """Instantiate the model a :class:`ModelSpec` describes and load its weights (safetensors only)."""
    if spec.name is not None:
        from ..models import load_causal_lm

        model, _ = load_causal_lm(spec.name, **spec.options)
    elif spec.builtin == "small_cnn":
        from ..experiments import SmallCNN

        model = SmallCNN(**spec.options)
    else:
        module_name, _, attr = str(spec.factory).partition(":")
        try:
            factory = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"model.factory {spec.factory!r} cannot be imported: {exc}") from exc
        model = factory(**spec.options)
        if not isinstance(model, torch.nn.Module):
            raise ConfigError(f"model.factory {spec.factory!r} returned {type(model).__name__}, not an nn.Module")
    if spec.weights is not None:
        state = load_weights_file(spec.weights)
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise ConfigError(f"model.weights {spec.weights!r} do not fit the model: {exc}") from None
    return model.eval()


def load_weights_file(weights: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a ``.safetensors`` file or a complete ``ErasusUnlearner.save`` folder (manifest checked)."""
    from ..io import verify_file, verify_run_folder
    from ..unlearner import load_safetensors

    path = Path(weights)
    if path.is_dir():
        verify_run_folder(path, needs=("model.safetensors",))
        path = path / "model.safetensors"
    elif path.suffix != ".safetensors" or not path.is_file():
        raise ConfigError(f"model.weights must be an existing .safetensors file or save() folder, got {str(weights)!r}")
    else:
        verify_file(path)
    return load_safetensors(path)


def check_paths(*, data: dict[str, Optional[str]], models: tuple[Optional[ModelSpec], ...]) -> None:
    """Every data file and weights path a config names exists, before any model is built or data read."""
    missing = [f"{key}: {value!r}" for key, value in data.items() if value is not None and not Path(value).exists()]
    for spec in models:
        if spec is not None and spec.weights is not None and not Path(spec.weights).exists():
            missing.append(f"model.weights: {spec.weights!r}")
    if missing:
        raise ConfigError(f"these paths in the config do not exist: {', '.join(missing)}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class UnlearnConfig(Config):
    """``erasus unlearn --config``: select a coreset of ``forget`` and unlearn it from ``model``."""

    kind: ClassVar[str] = "unlearn"
    model: ModelSpec
    forget: str
    retain: Optional[str] = None
    test: Optional[str] = None
    strategy: str = "grad_diff"
    strategy_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    selector: str = "auto"
    selector_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    prune_ratio: float = 0.1
    features: Optional[Literal["gradients", "embeddings"]] = None
    steps: Optional[int] = None
    epochs: Optional[float] = None
    seed: int = 0
    output: str = "unlearned"

    def __post_init__(self) -> None:
        from ..registry import SELECTORS, STRATEGIES

        if self.strategy not in STRATEGIES:
            raise ConfigError(f"strategy = {self.strategy!r} is not allowed; expected one of {STRATEGIES.names()}")
        if self.selector not in SELECTORS:
            raise ConfigError(f"selector = {self.selector!r} is not allowed; expected one of {SELECTORS.names()}")
        if not 0 < self.prune_ratio <= 1:
            raise ConfigError(f"prune_ratio must be in (0, 1], got {self.prune_ratio}")
        _check_options("strategy_options", self.strategy_options)
        _check_options("selector_options", self.selector_options)
        for key in ("steps",):
            value = getattr(self, key)
            if value is not None and value <= 0:
                raise ConfigError(f"{key} must be a positive integer, got {value}")
        if self.epochs is not None and self.epochs <= 0:
            raise ConfigError(f"epochs must be positive, got {self.epochs}")
        # the strategy checks its option names and values here, before any model or data is loaded
        from ..registry import get_selector, get_strategy

        try:
            strategy = get_strategy(self.strategy, **self.strategy_options)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"strategy_options for {self.strategy!r}: {exc}") from None
        _check_option_types(self.strategy, strategy)
        try:
            get_selector(self.selector, seed=self.seed, **self.selector_options)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"selector_options for {self.selector!r}: {exc}") from None


def _check_options(key: str, value: Any) -> None:
    if not isinstance(value, dict):
        raise ConfigError(f"{key} must be a mapping of option names to values, got {type(value).__name__}: {value!r}")
    bad = [k for k in value if not isinstance(k, str)]
    if bad:
        raise ConfigError(f"{key} keys must be option names (strings), got {bad}")


def _check_option_types(name: str, strategy: Any) -> None:
    """A YAML value of the wrong kind (``lr: "fast"``, a list for a number) is refused before any work.

    Learning rates, momentum, weight decay and batch size must be numbers; a boolean option a boolean; no
    numeric option takes a list or mapping. Other strings pass to the method, whose own check runs when it
    starts (some numeric options also take a word, e.g. RMU's ``steering_coeff: adaptive``).
    """
    from ..strategies.base import _COMMON

    defaults = {**_COMMON, **getattr(strategy, "defaults", {})}
    given = getattr(strategy, "_given", set())
    for key, value in getattr(strategy, "options", {}).items():
        default = defaults.get(key)
        if key not in given or value is None:
            continue
        strict = key in ("lr", "momentum", "weight_decay", "batch_size") or key.endswith("_lr")
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif strict or isinstance(default, (int, float)):
            is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
            ok = is_number if strict else not isinstance(value, (list, tuple, dict))
        else:
            continue
        if not ok:
            kind = "boolean" if isinstance(default, bool) else "number"
            raise ConfigError(f"strategy_options.{key} for {name!r} must be a {kind} (default {default!r}), "
                              f"got {value!r}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class EvaluateConfig(Config):
    """``erasus evaluate --config``: metrics of ``model`` (and gaps to ``reference``) on the data splits."""

    kind: ClassVar[str] = "evaluate"
    model: ModelSpec
    forget: str
    retain: Optional[str] = None
    test: Optional[str] = None
    reference: Optional[ModelSpec] = None
    metrics: tuple[str, ...] = ("accuracy", "mia", "mia_efficacy")

    def __post_init__(self) -> None:
        from ..registry import METRICS

        if isinstance(self.metrics, str) or not self.metrics:
            raise ConfigError(f"metrics must be a list of metric names, e.g. [accuracy, mia]; got {self.metrics!r}")
        for m in self.metrics:
            if m not in METRICS:
                raise ConfigError(f"metrics: {m!r} is not allowed; expected names from {METRICS.names()}")
