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
        from safetensors.torch import load_file

        path = Path(spec.weights)
        if path.is_dir():
            path = path / "model.safetensors"
        if path.suffix != ".safetensors" or not path.exists():
            raise ConfigError(f"model.weights must be an existing .safetensors file or save() folder, got {spec.weights!r}")
        model.load_state_dict(load_file(str(path)))
    return model.eval()


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

        for m in self.metrics:
            if m not in METRICS:
                raise ConfigError(f"metrics: {m!r} is not allowed; expected names from {METRICS.names()}")
