"""Per-sample features for coreset selection: projected per-sample gradients, gradient norms, embeddings."""

from .embeddings import embeddings
from .gradients import per_sample_grad_norms, per_sample_gradients

__all__ = ["embeddings", "per_sample_grad_norms", "per_sample_gradients"]
