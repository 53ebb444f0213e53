"""erasus: machine unlearning on coresets.

Pick a small, weighted coreset of the forget set that carries its influence (Rust selectors), unlearn
on it (torch strategies, Triton kernels on GPU), and measure the result against a retrained model.

Heavy dependencies (torch, transformers, triton) are imported only when the feature that needs them is
used, so ``import erasus`` is fast and works on machines without a GPU.
"""

from __future__ import annotations

import importlib
import os as _os
from typing import Any

from . import _core
from .errors import (
    ConfigError,
    ErasusError,
    ErasusTypeError,
    ErasusWarning,
    InvalidInputError,
    MemoryBudgetError,
    MissingDependencyError,
    NonFiniteError,
    RegistryError,
    TargetNotReachedWarning,
)
from .registry import (
    get_metric,
    get_model,
    get_selector,
    get_strategy,
    list_metrics,
    list_models,
    list_selectors,
    list_strategies,
    register_metric,
    register_model,
    register_selector,
    register_strategy,
)
from .selection import Selection, select

__version__: str = _core.__version__
get_num_threads = _core.get_num_threads


def set_num_threads(n: int) -> None:
    """Number of threads of the Rust selectors (0 = the default: ``ERASUS_NUM_THREADS``, else every CPU).

    Results never depend on it.
    """
    if isinstance(n, bool) or not hasattr(n, "__index__"):
        raise ErasusTypeError(f"set_num_threads takes an integer, got {type(n).__name__}")
    if int(n) < 0:
        raise InvalidInputError(f"set_num_threads needs n >= 0 (0 = the default), got {int(n)}")
    _core.set_num_threads(int(n))


def _check_thread_env() -> None:
    # the Rust pool reads the variable lazily and would fall back to every CPU without a word
    value = _os.environ.get("ERASUS_NUM_THREADS")
    if value is not None and not (value.strip().isdigit() and int(value) > 0):
        import warnings

        warnings.warn(f"ERASUS_NUM_THREADS={value!r} is not a positive integer; erasus uses every CPU instead",
                      RuntimeWarning, stacklevel=3)


_check_thread_env()

# rayon's pool does not survive fork(): rebuild it in DataLoader workers and other forked children.
if hasattr(_os, "register_at_fork"):
    _os.register_at_fork(after_in_child=_core._after_fork_in_child)

# name -> submodule that defines it; resolved on first access so `import erasus` stays light.
_LAZY = {
    "ErasusUnlearner": "erasus.unlearner",
    "features": "erasus.features",
    "kernels": "erasus.kernels",
    "tasks": "erasus.tasks",
    "strategies": "erasus.strategies",
    "metrics": "erasus.metrics",
    "selectors": "erasus.selectors",
    "config": "erasus.config",
    "distributed": "erasus.distributed",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'erasus' has no attribute {name!r}")
    mod = importlib.import_module(module)
    value = mod if module.endswith("." + name) else getattr(mod, name)
    globals()[name] = value
    return value


__all__ = [
    "ConfigError",
    "ErasusError",
    "ErasusTypeError",
    "ErasusWarning",
    "ErasusUnlearner",
    "InvalidInputError",
    "MemoryBudgetError",
    "MissingDependencyError",
    "NonFiniteError",
    "RegistryError",
    "TargetNotReachedWarning",
    "Selection",
    "__version__",
    "distributed",
    "features",
    "get_metric",
    "get_model",
    "get_num_threads",
    "get_selector",
    "get_strategy",
    "kernels",
    "list_metrics",
    "list_models",
    "list_selectors",
    "list_strategies",
    "metrics",
    "register_metric",
    "register_model",
    "register_selector",
    "register_strategy",
    "select",
    "set_num_threads",
    "strategies",
    "tasks",
]
