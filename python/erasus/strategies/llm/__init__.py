"""Causal-LM unlearning strategies (one file each); they register themselves on import."""

from . import causal_tracing, dpo, embedding_alignment, npo, rmu, simnpo, token_masking, undial

__all__ = ["causal_tracing", "dpo", "embedding_alignment", "npo", "rmu", "simnpo", "token_masking", "undial"]
