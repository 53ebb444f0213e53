"""The metric protocol: ``Metric(**options).compute(model, *data, **kw) -> dict[str, float]``.

Every metric is a thin class over a pure function (:mod:`erasus.metrics.functional`): the class collects
logits, labels and per-sample losses through the task adapter (:func:`erasus.tasks.infer_task`) and hands
them to the function. ``inputs`` names the data sets a metric takes, in positional order, so that
:class:`~erasus.metrics.MetricSuite` can pass each metric the splits it uses.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any, ClassVar

from ..errors import InvalidInputError

__all__ = ["Metric", "SplitMetric", "GROUPS"]

#: the specification's section-6 families, in the order ``erasus list metrics`` prints them
GROUPS = ("forgetting", "utility", "efficiency", "privacy")


class Metric(abc.ABC):
    """Base class of every registered metric.

    Options shared by all metrics: ``task`` (a :class:`erasus.tasks.Task` or its name; auto-detected from
    the model when ``None``), ``batch_size`` for evaluation passes and ``device`` (defaults to the model's).
    """

    registry_name: ClassVar[str] = ""
    #: names of the data sets :meth:`compute` takes, in positional order (subset of forget/retain/test)
    inputs: ClassVar[tuple[str, ...]] = ()
    #: the metric compares with a retrained model and needs ``reference_model=``
    needs_reference: ClassVar[bool] = False
    #: which of :data:`GROUPS` the metric belongs to (one line per metric class; ``erasus list metrics`` groups by it)
    group: ClassVar[str] = "utility"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.group not in GROUPS:
            raise InvalidInputError(f"{cls.__name__}.group must be one of {GROUPS}, got {cls.group!r}")

    def __init__(self, *, task: Any = None, batch_size: int = 256, device: Any = None) -> None:
        if not isinstance(batch_size, int) or batch_size <= 0:
            raise InvalidInputError(f"batch_size must be a positive int, got {batch_size!r}")
        self.task = task
        self.batch_size = batch_size
        self.device = device

    @abc.abstractmethod
    def compute(self, model: Any, *args: Any, **kwargs: Any) -> dict[str, float]:
        """Evaluate ``model`` on the given data; return ``{key: value}``."""

    def _collect(self, model: Any, data: Any, *, logits: bool = True, losses: bool = False) -> Any:
        from .outputs import collect_outputs

        return collect_outputs(model, data, task=self.task, batch_size=self.batch_size, device=self.device,
                               logits=logits, losses=losses)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(task={self.task!r}, batch_size={self.batch_size})"


class SplitMetric(Metric):
    """A metric reported on each split given (``forget=``, ``retain=``, ``test=``) as ``{split}_{key}``.

    The default :meth:`_split_value` is a classifier score ``fn(logits, labels)``; metrics that read a split
    differently (transcripts, a reference model's outputs, embeddings) override it and keep this loop.
    Keyword arguments of :meth:`compute` reach :meth:`_split_value` unchanged.
    """

    inputs = ("forget", "retain", "test")
    key: ClassVar[str] = ""
    fn: ClassVar[Callable[..., float]]

    def _value(self, logits: Any, labels: Any) -> float:
        return type(self).fn(logits, labels)

    def _split_value(self, model: Any, data: Any, **kwargs: Any) -> float:
        from .outputs import class_outputs

        logits, labels = class_outputs(self._collect(model, data), metric=self.key)
        return self._value(logits, labels)

    def compute(self, model: Any, forget: Any = None, retain: Any = None, test: Any = None, **kwargs: Any
                ) -> dict[str, float]:
        splits = {"forget": forget, "retain": retain, "test": test}
        if all(v is None for v in splits.values()):
            raise InvalidInputError(f"{self.key} needs at least one of forget=, retain=, test=")
        return {f"{split}_{self.key}": self._split_value(model, data, **kwargs)
                for split, data in splits.items() if data is not None}
