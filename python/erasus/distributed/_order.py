"""Row order for Ray Datasets: a Dataset keeps the ``DataContext`` copied when it was created, so setting
``DataContext.get_current().execution_options.preserve_order`` afterwards does not reach its execution, and
Ray Data then emits blocks in completion order (a slow first block lands last). Global row ``i`` of a
selection or of a feature shard must not depend on timing, so every execution here runs with the dataset's
*own* context set to preserve order, restored afterwards (the caller's Dataset is left as it came)."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator


@contextmanager
def preserve_order(ds: Any) -> Iterator[Any]:
    """Run the body with ``ds.context.execution_options.preserve_order = True`` (and the global context's, for
    datasets derived inside the body), then put both flags back."""
    import ray

    contexts = [ds.context, ray.data.DataContext.get_current()]
    kept = [c.execution_options.preserve_order for c in contexts]
    try:
        for c in contexts:
            c.execution_options.preserve_order = True
        yield ds
    finally:
        for c, k in zip(contexts, kept):
            c.execution_options.preserve_order = k
