"""Causal-LM unlearning strategies (one file each); they register themselves on import."""

from . import dpo, npo, rmu, simnpo, undial

__all__ = ["dpo", "npo", "rmu", "simnpo", "undial"]
