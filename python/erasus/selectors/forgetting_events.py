"""Forgetting events (Toneva et al., "An Empirical Study of Example Forgetting during Deep Neural Network Learning",
ICLR 2019), with the training-dynamics recorder that collects them."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from ..errors import InvalidInputError
from ..registry import register_selector
from ..selection import Selection
from ._common import ContextSelector, eval_mode, score_selection

__all__ = ["ForgettingEventsSelector", "ForgettingRecorder", "forgetting_counts"]


def forgetting_counts(history: np.ndarray) -> np.ndarray:
    """Forgetting events per row of a correctness history ``(n, T)`` (1 correct, 0 wrong, NaN not presented).

    An event is a transition ``acc_{t-1} = 1 -> acc_t = 0`` between consecutive presentations. Samples never
    classified correctly count ``T + 1`` events, more than any learned sample can have: the paper ranks them
    with the most forgettable.
    """
    h = np.asarray(history, dtype=np.float64)
    counts, learned = np.zeros(h.shape[0]), np.zeros(h.shape[0], dtype=bool)
    for i, row in enumerate(h):
        seen = row[~np.isnan(row)]
        if seen.size and not np.all((seen == 0) | (seen == 1)):
            raise InvalidInputError(f"the correctness history of sample {i} has values other than 0, 1 and NaN")
        counts[i] = np.sum((seen[:-1] == 1) & (seen[1:] == 0))
        learned[i] = bool(np.any(seen == 1))
    counts[~learned] = h.shape[1] + 1
    return counts


class ForgettingRecorder:
    """Training-dynamics callback: records, per sample, whether it was classified correctly each time it was seen.

    Call :meth:`update` after the forward pass of every training minibatch (as Toneva et al. do) with the
    samples' dataset indices (e.g. from :class:`erasus.data.IndexedDataset`), the logits and the labels, or
    :meth:`observe` once per epoch to score the whole dataset. :meth:`history` is the ``(n, T)`` correctness
    matrix the ``"forgetting_events"`` selector consumes (``select(k, recorder=rec)`` works too).
    """

    def __init__(self, num_samples: int) -> None:
        if int(num_samples) < 1:
            raise InvalidInputError(f"num_samples must be >= 1, got {num_samples}")
        self.num_samples = int(num_samples)
        self._events: list[list[float]] = [[] for _ in range(self.num_samples)]

    def update(self, indices: Any, logits: Any, labels: Any) -> None:
        """Record the correctness ``argmax(logits_i) == labels_i`` of the samples ``indices`` of this minibatch."""
        idx = np.asarray(indices.detach().cpu() if hasattr(indices, "detach") else indices).reshape(-1)
        z = np.asarray(logits.detach().float().cpu() if hasattr(logits, "detach") else logits)
        y = np.asarray(labels.detach().cpu() if hasattr(labels, "detach") else labels).reshape(-1)
        if z.ndim != 2 or z.shape[0] != idx.shape[0] or y.shape[0] != idx.shape[0]:
            raise InvalidInputError(f"update() needs indices (B,), logits (B, C) and labels (B,); got {idx.shape}, "
                                    f"{z.shape} and {y.shape}")
        if idx.size and (idx.min() < 0 or idx.max() >= self.num_samples):
            raise InvalidInputError(f"indices must lie in [0, {self.num_samples}), got {idx.min()}..{idx.max()}")
        correct = z.argmax(axis=1) == y
        for i, c in zip(idx.tolist(), correct.tolist()):
            self._events[i].append(float(c))

    def observe(self, model: Any, data: Any, *, task: Any = None, batch_size: int | None = None) -> None:
        """Score every sample of ``data`` (in order, index = position) with ``model``, in eval mode."""
        import torch

        from ..data import as_loader
        from ..tasks import get_task, infer_task

        t = infer_task(model, data) if task is None else get_task(task)
        device = next(iter(model.parameters())).device
        start = 0
        with eval_mode(model), torch.no_grad():
            for batch in as_loader(data, batch_size=batch_size):
                batch = t.to_device(batch, device)
                logits, y = t.outputs(model, batch), t.labels(batch)
                self.update(np.arange(start, start + len(y)), logits, y)
                start += len(y)
        if start != self.num_samples:
            raise InvalidInputError(f"the recorder tracks {self.num_samples} samples but data has {start}")

    def history(self) -> np.ndarray:
        """Correctness per presentation, ``(n, T)`` with ``T`` the most presentations of any sample (NaN-padded)."""
        width = max(1, max(len(e) for e in self._events))
        out = np.full((self.num_samples, width), np.nan)
        for i, e in enumerate(self._events):
            out[i, :len(e)] = e
        return out

    def counts(self) -> np.ndarray:
        """Forgetting events per sample (see :func:`forgetting_counts`)."""
        return forgetting_counts(self.history())


@register_selector("forgetting_events")
class ForgettingEventsSelector(ContextSelector):
    """Forgetting events (Toneva et al., ICLR 2019): keep the samples forgotten most often during training.

    ``score_i = #{t : acc_{i,t-1} = 1, acc_{i,t} = 0}`` over consecutive presentations; never-learned samples
    rank first. ``keep="forgettable"`` (default) keeps the highest counts, ``"unforgettable"`` the lowest.
    Input: ``features`` = the ``(n, T)`` correctness history (NaN where a sample was not presented), or
    ``select(k, recorder=ForgettingRecorder)`` after training with the recorder.
    """

    allows_nan = True  # NaN marks a presentation that did not happen

    def __init__(self, *, seed: int = 0, keep: Literal["forgettable", "unforgettable"] = "forgettable") -> None:
        if keep not in ("forgettable", "unforgettable"):
            raise InvalidInputError(f"keep must be 'forgettable' or 'unforgettable', got {keep!r}")
        super().__init__(seed=seed, keep=keep)
        self.keep = keep

    def select(self, k: int | None = None, *, features: Any = None, recorder: ForgettingRecorder | None = None,
               **kwargs: Any) -> Selection:
        """As :meth:`Selector.select`; ``recorder=`` supplies the history recorded during training."""
        if recorder is not None:
            if features is not None:
                raise InvalidInputError("give either features= (a correctness history) or recorder=, not both")
            if not isinstance(recorder, ForgettingRecorder):
                raise InvalidInputError(f"recorder must be a ForgettingRecorder, got {type(recorder).__name__}")
            features = recorder.history()
        return super().select(k, features=features, **kwargs)

    def _select(self, x: np.ndarray, k: int, *, labels: np.ndarray | None) -> Selection:
        counts = forgetting_counts(x)
        return score_selection(counts, k, largest=self.keep == "forgettable")
