""""Unlearn until": a stopping rule checked every few optimizer steps on a probe set.

``strategy.unlearn(..., until={"metric": "forget_accuracy", "below": 0.05}, steps=cap)`` trains until the probe
meets the target or ``cap`` steps have run, whichever comes first. The budget is the forgetting the user needs,
not a fixed epoch count, so a coreset may take more passes than the full forget set (issue 19).

A rule is a dict:

* ``metric``: a registered metric name (``erasus.list_metrics()``) or one of its output keys written
  ``{split}_{metric}`` (``forget_accuracy``, ``test_loss``); ``key`` picks an output key explicitly. Or
  ``avg_gap_to``: the retrained model, and the value is SalUn's Avg. Gap (Fan et al., ICLR 2024) to it **in
  points** (x100, the unit of SalUn's tables): ``{"avg_gap_to": retrained, "below": 2.0}``.
* exactly one of ``below`` / ``above``: the target (met when ``value < below`` / ``value > above``).
* ``every``: check every this many optimizer steps (default 10), and always after a phase's last step.
* ``data``: the probe (default: the forget set given to ``unlearn``; :class:`~erasus.ErasusUnlearner` passes the
  whole forget set, not the coreset). ``retain`` / ``test``: the other splits a metric needs (default: the retain
  set given to ``unlearn``, no test set). ``options``: the metric's own options. ``reference_model``: for
  metrics that compare with the retrained model. ``batch_size``: evaluation batch size (default 256).

The probe is evaluated once on the caller's model before any step (so a bad rule fails before any work and the
trajectory starts at step 0), then in evaluation mode, without gradients and without touching the training RNG,
so a run with ``until`` follows the same trajectory as the same run without it up to the step where it stops.
``elapsed_s`` is the wall time since the method started, probe evaluations excluded; ``cpu_s`` the same span in
CPU seconds of this process (``time.process_time()``: every thread's, so a run limited to one thread measures
its own work, which the machine's load inflates far less than the wall clock).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch

from ..data import as_dataset
from ..errors import ConfigError, ErasusTypeError, InvalidInputError

__all__ = ["History", "StoppingRule", "DEFAULT_EVERY"]

DEFAULT_EVERY = 10
_KEYS = ("metric", "key", "avg_gap_to", "below", "above", "every", "data", "retain", "test", "options",
         "reference_model", "batch_size")
_SPLITS = ("forget", "retain", "test")


class History(list):  # type: ignore[type-arg]
    """The loss of every optimizer step (a plain list of floats, as without ``until``) plus the stopping record.

    ``checks``: one dict per probe evaluation, ``{"step", "elapsed_s", "cpu_s", "value", "met"}`` (step 0 is before
    training). ``until``: the rule's summary (``metric``, ``target``, ``reached``, ``step``, ``elapsed_s``,
    ``value``, ``cap``), or ``None`` when the run had no rule.
    """

    def __init__(self, losses: Any = (), *, checks: list[dict[str, Any]] | None = None,
                 until: dict[str, Any] | None = None) -> None:
        super().__init__(losses)
        self.checks: list[dict[str, Any]] = list(checks or [])
        self.until: dict[str, Any] | None = until

    @property
    def target_reached(self) -> bool | None:
        """Whether the rule's target was met (``None`` without a rule)."""
        return None if self.until is None else bool(self.until["reached"])

    def copy(self) -> History:  # type: ignore[override]
        return History(self, checks=[dict(c) for c in self.checks],
                       until=None if self.until is None else dict(self.until))


def _number(rule: Mapping[str, Any], name: str) -> float:
    value = rule[name]
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ConfigError(f"until[{name!r}] must be a number, got {value!r} ({type(value).__name__})")
    if not math.isfinite(float(value)):
        raise ConfigError(f"until[{name!r}] must be finite, got {value!r}")
    return float(value)


class StoppingRule:
    """A parsed, validated ``until`` dict (see the module docstring); :meth:`check` evaluates the probe."""

    def __init__(self, rule: Any, *, task: Any, forget: Any, retain: Any) -> None:
        from ..registry import METRICS

        if not isinstance(rule, Mapping):
            raise ErasusTypeError(f"until must be a dict such as {{'metric': 'forget_accuracy', 'below': 0.05}}, "
                                  f"got {type(rule).__name__}")
        unknown = sorted(set(rule) - set(_KEYS))
        if unknown:
            raise ConfigError(f"unknown until key(s) {unknown}; known keys: {list(_KEYS)}")
        if ("below" in rule) == ("above" in rule):
            raise ConfigError("until needs exactly one of 'below' or 'above' (the target the probe must cross), got "
                              + ("both" if "below" in rule else "neither"))
        self.direction = "below" if "below" in rule else "above"
        self.threshold = _number(rule, self.direction)
        every = rule.get("every", DEFAULT_EVERY)
        if isinstance(every, bool) or not isinstance(every, (int, np.integer)) or every <= 0:
            raise ConfigError(f"until['every'] must be a positive integer (optimizer steps), got {every!r}")
        self.every = int(every)
        batch_size = rule.get("batch_size", 256)
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size <= 0:
            raise ConfigError(f"until['batch_size'] must be a positive integer, got {batch_size!r}")
        options = rule.get("options", {})
        if not isinstance(options, Mapping):
            raise ConfigError(f"until['options'] must be a dict of metric options, got {type(options).__name__}")
        if ("metric" in rule) == ("avg_gap_to" in rule):
            raise ConfigError("until needs exactly one of 'metric' (a metric name such as 'forget_accuracy') or "
                              "'avg_gap_to' (the retrained model)")
        self.reference = rule.get("avg_gap_to", rule.get("reference_model"))
        if self.reference is not None and not isinstance(self.reference, torch.nn.Module):
            raise ErasusTypeError(f"until['avg_gap_to'] / until['reference_model'] must be a torch.nn.Module, got "
                                  f"{type(self.reference).__name__}")
        splits = {"forget": rule.get("data", forget), "retain": rule.get("retain", retain), "test": rule.get("test")}
        for split, data in splits.items():
            if data is not None:
                n = len(as_dataset(data))  # type: ignore[arg-type]
                if n == 0:
                    raise InvalidInputError(f"the until probe's {split} set is empty")
        if splits["forget"] is None:
            raise InvalidInputError("until needs a probe: pass until['data'] (there is no forget set)")
        shared = {"task": task, "batch_size": int(batch_size)}
        self.gap = "avg_gap_to" in rule
        if self.gap:
            from ..metrics.accuracy import AccuracyMetric
            from ..metrics.mia_efficacy import MIAEfficacyMetric

            missing = [s for s in _SPLITS if splits[s] is None]
            if missing:
                raise InvalidInputError(f"until['avg_gap_to'] needs the {' and '.join(missing)} set(s) (Avg. Gap "
                                        "averages forget/retain/test accuracy and MIA-Efficacy gaps); pass "
                                        + " and ".join(f"until[{'data' if s == 'forget' else s!r}]" for s in missing))
            self.name, self.key = "avg_gap", "avg_gap"
            self._parts = [AccuracyMetric(**shared), MIAEfficacyMetric(**{**shared, **options})]
            self.splits = splits
            self._reference_values: dict[str, float] | None = None
        else:
            name = rule["metric"]
            if not isinstance(name, str) or not name:
                raise ConfigError(f"until['metric'] must be a metric name, got {name!r}")
            metric_name, key, split = name, rule.get("key", name), None
            if name not in METRICS.names():
                prefix, _, rest = name.partition("_")
                if prefix in _SPLITS and rest in METRICS.names():
                    metric_name, split = rest, prefix
                else:
                    raise ConfigError(
                        f"until['metric'] {name!r} is neither a registered metric nor '{{split}}_{{metric}}' with split "
                        f"in {_SPLITS} (e.g. 'forget_accuracy'); registered metrics: {METRICS.names()}")
            try:
                self.metric = METRICS.get(metric_name, **{**shared, **options})
            except TypeError as exc:
                raise ConfigError(f"invalid until['options'] for metric {metric_name!r}: {exc}") from None
            if self.metric.needs_reference and self.reference is None:
                raise InvalidInputError(f"metric {metric_name!r} compares with the retrained model: pass "
                                        "until['reference_model']")
            self.name, self.key = name, key
            # only the splits the metric cannot do without (and the one the key names) are evaluated each check
            from ..metrics.suite import _positional

            params = _positional(self.metric)
            self.splits = {}
            for s, param in zip(self.metric.inputs, params, strict=False):
                needed = param.default is param.empty or s == split or s == "forget" or s in rule
                if needed and splits[s] is None:
                    raise InvalidInputError(f"until metric {name!r} needs the {s} set; pass until[{s!r}]")
                self.splits[s] = splits[s] if needed else None
        self.checks: list[dict[str, Any]] = []
        self.met = False
        self.step = 0
        self.cap: int | None = None
        self._started = time.perf_counter()
        self._probe_s = self._probe_offset = 0.0
        self._started_cpu = time.process_time()
        self._probe_cpu = self._probe_cpu_offset = 0.0

    # -------------------------------------------------------------------------------------- evaluation
    def value(self, model: torch.nn.Module) -> float:
        """The probe's value for ``model`` (evaluation mode, no gradients, the global RNG left as it was)."""
        with torch.random.fork_rng(devices=_cuda_devices(model)), _eval_flags(model):
            if self.gap:
                from ..metrics.gap import avg_gap

                if self._reference_values is None:
                    self._reference_values = self._components(self.reference)
                return 100.0 * avg_gap(self._components(model), self._reference_values)
            args = [self.splits.get(s) for s in self.metric.inputs]
            while args and args[-1] is None:
                args.pop()
            kwargs = {"reference_model": self.reference} if self.metric.needs_reference else {}
            out = self.metric.compute(model, *args, **kwargs)
        out = out if isinstance(out, dict) else {self.name: float(out)}
        if self.key not in out:
            if len(out) == 1 and self.key == self.name:
                self.key = next(iter(out))
            else:
                raise InvalidInputError(f"until metric {self.name!r} returned keys {sorted(out)}; pick one with "
                                        "until['key']")
        value = float(out[self.key])
        if not math.isfinite(value):
            raise InvalidInputError(f"until metric {self.key!r} evaluated to {value} at step {self.step}")
        return value

    def _components(self, model: torch.nn.Module) -> dict[str, float]:
        out: dict[str, float] = {}
        for metric in self._parts:
            out.update(metric.compute(model, self.splits["forget"], self.splits["retain"], self.splits["test"]))
        return out

    def is_met(self, value: float) -> bool:
        return value < self.threshold if self.direction == "below" else value > self.threshold

    def start(self, model: torch.nn.Module) -> None:
        """Evaluate the untouched model (step 0): validates the rule on real outputs before any step."""
        self._started = time.perf_counter()
        self._probe_s = self._probe_offset = 0.0
        self._started_cpu = time.process_time()
        self._probe_cpu = self._probe_cpu_offset = 0.0
        self.checks, self.step, self.met = [], 0, False
        self.check(model, step=0)

    def restart_clock(self) -> None:
        """Start ``elapsed_s`` at the method's start (after the step-0 probe and the model copy)."""
        self._started = time.perf_counter()
        self._probe_offset = self._probe_s
        self._started_cpu = time.process_time()
        self._probe_cpu_offset = self._probe_cpu

    def check(self, model: torch.nn.Module, *, step: int) -> bool:
        """Evaluate the probe after ``step`` optimizer steps; returns (and remembers) whether the target is met."""
        elapsed = time.perf_counter() - self._started - (self._probe_s - self._probe_offset)
        cpu = time.process_time() - self._started_cpu - (self._probe_cpu - self._probe_cpu_offset)
        t0, c0 = time.perf_counter(), time.process_time()
        value = self.value(model)
        self._probe_s += time.perf_counter() - t0
        self._probe_cpu += time.process_time() - c0
        self.step, self.met = step, self.is_met(value)
        self.checks.append({"step": step, "elapsed_s": max(elapsed, 0.0) if step else 0.0,
                            "cpu_s": max(cpu, 0.0) if step else 0.0, "value": value, "met": self.met})
        return self.met

    def due(self, step: int) -> bool:
        return step % self.every == 0

    def summary(self) -> dict[str, Any]:
        last = self.checks[-1] if self.checks else {"step": 0, "elapsed_s": 0.0, "cpu_s": 0.0, "value": float("nan")}
        return {"metric": self.key, "target": f"{self.direction} {self.threshold:g}", "reached": self.met,
                "step": last["step"], "elapsed_s": last["elapsed_s"], "cpu_s": last["cpu_s"], "value": last["value"],
                "cap": self.cap, "every": self.every, "probe_s": self._probe_s, "probe_cpu_s": self._probe_cpu}


def _cuda_devices(model: torch.nn.Module) -> list[torch.device]:
    return sorted({p.device for p in model.parameters() if p.device.type == "cuda"}, key=str)


@contextlib.contextmanager
def _eval_flags(model: torch.nn.Module) -> Iterator[None]:
    """Every submodule's train/eval flag and the grad mode are given back after the probe."""
    flags = [(m, m.training) for m in model.modules()]
    try:
        with torch.no_grad():
            yield
    finally:
        for m, flag in flags:
            m.training = flag
