"""Cost of an unlearning call: wall time, peak memory (RSS and CUDA) and FLOPs.

>>> with track_efficiency() as cost:
...     new_model = erasus.get_strategy("scrub").unlearn(model=m, forget_loader=f, retain_loader=r)
>>> cost.result  # {"wall_time_s": ..., "peak_rss_mb": ..., "flops": ..., "peak_cuda_mb": ...}

FLOPs are counted by :class:`torch.utils.flop_counter.FlopCounterMode` (matmuls, convolutions, attention,
forward and backward; a linear layer on a batch of ``B`` costs ``2 B d_in d_out``). Peak RSS is the peak
of the call itself on Linux (the kernel's high-water mark, reset through ``/proc/self/clear_refs``);
elsewhere it falls back to the process's lifetime peak from :func:`resource.getrusage` and
``peak_rss_scope`` says so.
"""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import Any, Callable

import torch

from ..errors import InvalidInputError
from ..registry import register_metric
from .base import Metric
from .outputs import evaluating, model_device, ordered_loader, resolve_task

__all__ = ["EfficiencyTracker", "track_efficiency", "EfficiencyMetric"]

_MB = 2.0**20


def _reset_rss_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # "5" resets the peak RSS (VmHWM) of this process, Linux >= 4.0
        return True
    except OSError:
        return False


def _rss_peak_bytes(exact: bool) -> float:
    if exact:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return float(line.split()[1]) * 1024.0
    import resource

    peak = float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    return peak if sys.platform == "darwin" else peak * 1024.0  # bytes on macOS, KiB on Linux


class EfficiencyTracker:
    """Context manager measuring the block it wraps; read :attr:`result` after the block.

    Args:
        flops: count FLOPs with ``FlopCounterMode`` (adds a little dispatch overhead to every op).
        device: CUDA device whose peak allocation is reported (default: the current one, when CUDA is in use).
    """

    def __init__(self, *, flops: bool = True, device: Any = None) -> None:
        self.flops = flops
        self.device = device
        self.result: dict[str, float] = {}
        self.peak_rss_scope = ""
        self._counter: Any = None
        self._exact_rss = False
        self._start = 0.0

    def _cuda(self) -> bool:
        return torch.cuda.is_available() and torch.cuda.is_initialized()

    def __enter__(self) -> "EfficiencyTracker":
        self.result = {}
        self._exact_rss = _reset_rss_peak()
        self.peak_rss_scope = "call" if self._exact_rss else "process"
        if self._cuda():
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        if self.flops:
            from torch.utils.flop_counter import FlopCounterMode

            self._counter = FlopCounterMode(display=False)
            self._counter.__enter__()
        self._start = time.perf_counter()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._cuda():
            torch.cuda.synchronize(self.device)
        wall = time.perf_counter() - self._start
        if self._counter is not None:
            self._counter.__exit__(exc_type, exc, tb)
        self.result = {"wall_time_s": wall, "peak_rss_mb": _rss_peak_bytes(self._exact_rss) / _MB}
        if self._counter is not None:
            self.result["flops"] = float(self._counter.get_total_flops())
            self._counter = None
        if self._cuda():
            self.result["peak_cuda_mb"] = torch.cuda.max_memory_allocated(self.device) / _MB


def track_efficiency(*, flops: bool = True, device: Any = None) -> EfficiencyTracker:
    """``with track_efficiency() as cost: ...`` then ``cost.result`` (see :class:`EfficiencyTracker`)."""
    return EfficiencyTracker(flops=flops, device=device)


@register_metric("efficiency")
class EfficiencyMetric(Metric):
    """Cost of ``fn(model)`` (e.g. an unlearning call), or of one inference pass over ``forget`` without ``fn``.

    Keys ``wall_time_s``, ``peak_rss_mb``, ``flops`` (with ``flops=True``) and ``peak_cuda_mb`` on CUDA.
    """

    group = "efficiency"

    inputs = ("forget",)

    def __init__(self, *, flops: bool = True, fn: Callable[[torch.nn.Module], Any] | None = None,
                 **options: Any) -> None:
        super().__init__(**options)
        self.flops = flops
        self.fn = fn

    def _inference(self, model: torch.nn.Module, data: Any) -> None:
        task = resolve_task(model, data, self.task)
        dev = model_device(model, self.device)
        with evaluating(model), torch.no_grad():
            for batch in ordered_loader(data, batch_size=self.batch_size):
                task.outputs(model, task.to_device(batch, dev))

    def compute(self, model: torch.nn.Module, forget: Any = None) -> dict[str, float]:
        if self.fn is None and forget is None:
            raise InvalidInputError(
                "efficiency measures fn(model) when fn= is given, else a pass over forget=; got neither")
        dev = model_device(model, self.device)
        with track_efficiency(flops=self.flops, device=dev if dev.type == "cuda" else None) as cost:
            if self.fn is not None:
                self.fn(model)
            else:
                self._inference(model, forget)
        return cost.result
