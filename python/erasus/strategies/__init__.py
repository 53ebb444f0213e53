"""Unlearning strategies, written once against the task adapters (:mod:`erasus.tasks`).

``erasus.get_strategy(name, **options).unlearn(model=..., forget_loader=..., retain_loader=...)``; importing
this package registers every built-in method.
"""

from . import (  # noqa: F401  (registration side effects)
    amnesiac,
    bad_teacher,
    boundary_shrink,
    certified_newton,
    certified_removal,
    dp_finetune,
    finetune,
    fisher_forgetting,
    grad_diff,
    gradient_ascent,
    l1_sparse,
    llm,
    neg_grad_plus,
    neuron_pruning,
    random_label,
    retrain,
    salun,
    scrub,
    sisa,
    ssd,
    unsir,
    vlm,
)
from .amnesiac import AmnesiacRecorder
from .base import Run, UnlearningStrategy

__all__ = ["UnlearningStrategy", "Run", "AmnesiacRecorder"]
