"""Causal-LM unlearning strategies (one file each); they register themselves on import."""

from . import causal_tracing, dpo, embedding_alignment, forget_token_npo, npo, rmu, simnpo, undial

__all__ = ["causal_tracing", "dpo", "embedding_alignment", "forget_token_npo", "npo", "rmu", "simnpo", "undial"]
