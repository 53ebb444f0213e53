"""The selector protocol: ``Selector(**options).select(k, features=X)`` -> :class:`~erasus.Selection`.

A selector either consumes features directly (``features=``) or computes them from a model and data
(``model=``, ``data=``) through :mod:`erasus.features` — per-sample gradients for gradient-based
selectors, embeddings for geometric ones. Subclasses implement :meth:`Selector._select` on a
validated float32 C-contiguous matrix.
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar, Literal

import numpy as np

from ..errors import InvalidInputError
from ..selection import Selection, as_features, check_values, resolve_k

__all__ = ["Selector", "features_from_model"]

FeatureKind = Literal["gradients", "embeddings"]


def features_from_model(model: Any, data: Any, *, kind: FeatureKind, seed: int = 0, **options: Any) -> Any:
    """Compute selection features for ``data`` under ``model`` (gradients or embeddings)."""
    from .. import features

    if kind == "gradients":
        return features.per_sample_gradients(model, data, seed=seed, **options)
    if kind == "embeddings":
        return features.embeddings(model, data, **options)
    raise InvalidInputError(f"feature kind must be 'gradients' or 'embeddings', got {kind!r}")


def _checked_labels(labels: Any, n: int) -> np.ndarray | None:
    """Integer class ids of shape ``(n,)`` (non-finite, negative or fractional labels refused), or None."""
    if labels is None:
        return None
    from ._common import as_labels

    return as_labels(labels, n)


class Selector(abc.ABC):
    """Base class of every coreset selector."""

    registry_name: ClassVar[str] = ""
    #: which features the selector wants when given a model instead of features
    default_features: ClassVar[FeatureKind] = "embeddings"
    #: False for selectors that only need the number of rows (``random``): no features are computed for them
    needs_features: ClassVar[bool] = True
    #: True where NaN in the features carries a meaning the selector documents (an unscored position)
    allows_nan: ClassVar[bool] = False

    def __init__(self, *, seed: int = 0, **options: Any) -> None:
        self.seed = int(seed)
        self.options = options

    def select(
        self,
        k: int | None = None,
        *,
        features: Any = None,
        model: Any = None,
        data: Any = None,
        ratio: float | None = None,
        labels: Any = None,
        feature_kind: FeatureKind | None = None,
        feature_options: dict[str, Any] | None = None,
    ) -> Selection:
        """Pick ``k`` rows (or ``ratio`` of them) of ``features``, or of features computed from ``model`` on ``data``."""
        if features is None and not self.needs_features and data is not None:
            features = np.zeros((len(data), 1), dtype=np.float32)  # only the row count is read
        if features is None:
            if model is None or data is None:
                raise InvalidInputError("select() needs features=..., or both model=... and data=...")
            features = features_from_model(
                model, data, kind=feature_kind or self.default_features, seed=self.seed, **(feature_options or {})
            )
        if self._torch_path(features):
            from ._torch import as_rows

            if getattr(features, "ndim", None) == 2 and min(features.shape) > 0:
                # the same value check as the numpy path (NaN/inf by cell, complex, float32 overflow), on the device
                check_values(features, allow_nan=self.allows_nan)
            rows = as_rows(features, block_rows=self.options.get("block_rows"))
            k = resolve_k(rows.n, k, ratio=ratio)
            sel = self._select_torch(rows, k, labels=_checked_labels(labels, rows.n))
        else:
            x = as_features(features, allow_nan=self.allows_nan)
            k = resolve_k(x.shape[0], k, ratio=ratio)
            sel = self._select(x, k, labels=_checked_labels(labels, x.shape[0]))
        if not sel.method:
            sel = Selection(sel.indices, sel.weights, sel.gains, sel.objective, self.registry_name, sel.metadata)
        return sel

    def _torch_path(self, features: Any) -> bool:
        """Whether ``features`` go through :meth:`_select_torch` (selectors with a torch twin decide by ``backend``)."""
        return False

    def _select_torch(self, rows: Any, k: int, *, labels: np.ndarray | None) -> Selection:
        """Select ``k`` rows of a validated :class:`~erasus.selectors._torch.Rows` source (torch twin).

        Only selectors whose :meth:`_torch_path` can answer True override this; the base refuses clearly.
        """
        raise InvalidInputError(
            f"selector {self.registry_name or type(self).__name__!r} has no torch path: pass the features as a numpy "
            "array (or a CPU tensor with backend='rust'); torch paths exist for kcenter, herding, kmeans, "
            "facility_location and craig"
        )

    @abc.abstractmethod
    def _select(self, x: np.ndarray, k: int, *, labels: np.ndarray | None) -> Selection:
        """Select ``k`` rows of the validated float32 C-contiguous matrix ``x``."""

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return f"{type(self).__name__}(seed={self.seed}{', ' if opts else ''}{opts})"
