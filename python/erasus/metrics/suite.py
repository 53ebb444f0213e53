"""Run a named set of metrics on one model, and on the retrained reference model to report the gaps."""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from tqdm.auto import tqdm

from ..errors import ConfigError, InvalidInputError
from ..registry import METRICS
from .base import Metric
from .gap import GAP_KEYS, avg_gap
from .outputs import output_cache

__all__ = ["MetricSuite", "DEFAULT_METRICS"]

DEFAULT_METRICS = ("accuracy", "loss", "mia", "mia_efficacy")


class MetricSuite:
    """A named set of metrics run together: ``MetricSuite(names=[...], **options).run(model, forget=..., ...)``.

    ``options``: ``task``, ``batch_size``, ``device`` go to every metric; a metric's own options go under its
    name, e.g. ``MetricSuite(["accuracy", "lira"], lira={"model_factory": f, "population": p})``.

    ``run`` returns one flat dict. Each split is evaluated once per model and shared by the metrics. With
    ``reference_model`` (the model retrained without the forget set) every metric that does not itself
    compare with the reference is also run on it, reported as ``reference/{key}``, with ``gap/{key}`` =
    ``|model - reference|``, and ``avg_gap`` = the mean of the gaps over ``gap_keys`` among the results
    (SalUn's Avg. Gap with the defaults: forget/retain/test accuracy and MIA-Efficacy). Naming
    ``"avg_gap"`` makes sure all of its components are run.
    """

    def __init__(self, names: Sequence[str] = DEFAULT_METRICS, *, task: Any = None, batch_size: int = 256,
                 device: Any = None, gap_keys: Sequence[str] = GAP_KEYS, progress: bool = False,
                 **metric_options: Mapping[str, Any]) -> None:
        if isinstance(names, str) or not names:
            raise ConfigError(f"names must be a non-empty list of metric names, got {names!r}")
        names = list(dict.fromkeys(names))
        self.want_gap = "avg_gap" in names
        if self.want_gap:
            # the suite derives avg_gap from these results rather than evaluating every model twice
            names = [n for n in names if n != "avg_gap"]
            names += [n for n in ("accuracy", "mia_efficacy") if n not in names]
        unknown_opts = sorted(set(metric_options) - set(names))
        if unknown_opts:
            raise ConfigError(f"options given for metrics not in names: {unknown_opts}; names are {names}")
        shared = {"task": task, "batch_size": batch_size, "device": device}
        self.metrics: dict[str, Metric] = {}
        for name in names:
            opts = metric_options.get(name, {})
            if not isinstance(opts, Mapping):
                raise ConfigError(f"options for metric {name!r} must be a dict, got {type(opts).__name__}")
            self.metrics[name] = METRICS.get(name, **{**shared, **opts})
        self.gap_keys = tuple(gap_keys)
        self.progress = progress

    def missing_splits(self, splits: Mapping[str, Any]) -> list[tuple[str, str]]:
        """``(metric, split)`` for every data set a metric requires that ``splits`` lacks (checked before any work)."""
        missing = []
        for name, metric in self.metrics.items():
            for split, param in zip(metric.inputs, _positional(metric), strict=False):
                if splits.get(split) is None and param.default is param.empty:
                    missing.append((name, split))
        return missing

    @staticmethod
    def _call(name: str, metric: Metric, model: torch.nn.Module, splits: dict[str, Any],
              reference_model: torch.nn.Module | None) -> dict[str, float]:
        # ``inputs`` lists the data sets in compute()'s positional order; pass them positionally so a metric
        # may name its parameters as it likes (e.g. ``holdout`` for the test split)
        args = []
        for split, param in zip(metric.inputs, _positional(metric), strict=False):
            value = splits.get(split)
            if value is None and param.default is param.empty:
                raise InvalidInputError(f"metric {name!r} needs the {split} data set; pass {split}= to run()")
            args.append(value)
        while args and args[-1] is None:
            args.pop()
        kwargs = {}
        if metric.needs_reference:
            if reference_model is None:
                raise InvalidInputError(f"metric {name!r} compares with the retrained model: pass reference_model=")
            kwargs["reference_model"] = reference_model
        result = metric.compute(model, *args, **kwargs)
        return result if isinstance(result, dict) else {name: float(result)}

    def run(self, model: torch.nn.Module, *, forget: Any, retain: Any = None, test: Any = None,
            reference_model: torch.nn.Module | None = None) -> dict[str, float]:
        """Run every metric; see the class docstring for the keys."""
        if self.want_gap and reference_model is None:
            raise InvalidInputError("avg_gap compares with the retrained model: pass reference_model=")
        splits = {"forget": forget, "retain": retain, "test": test}
        out: dict[str, float] = {}
        with output_cache():
            for name, metric in tqdm(self.metrics.items(), desc="metrics", disable=not self.progress):
                mine = self._call(name, metric, model, splits, reference_model)
                out.update(mine)
                if reference_model is None or metric.needs_reference:
                    continue
                ref = self._call(name, metric, reference_model, splits, None)
                for key, value in ref.items():
                    out[f"reference/{key}"] = value
                    if key in mine:
                        out[f"gap/{key}"] = abs(mine[key] - value)
        if reference_model is not None:
            keys = [k for k in self.gap_keys if k in out and f"reference/{k}" in out]
            if keys:
                out["avg_gap"] = avg_gap(out, {k: out[f"reference/{k}"] for k in keys}, keys=keys)
        return out

    def __repr__(self) -> str:
        return f"MetricSuite(names={list(self.metrics)})"


def _positional(metric: Metric) -> list[inspect.Parameter]:
    """compute()'s data parameters after the model, in the order of ``metric.inputs``."""
    return [p for p in inspect.signature(metric.compute).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)][1:]
