"""Experiments on real data: the main job (``erasus demo``) and the coreset-versus-full benchmark.

:func:`run_claim` trains a model, retrains the oracle without the forget set, and compares unlearning on the
whole forget set with unlearning on coresets picked by each selector, for each strategy.
"""

from .claim import ClaimConfig, run_claim, summarize
from .datasets import load_dataset
from .models import SmallCNN

__all__ = ["ClaimConfig", "run_claim", "summarize", "load_dataset", "SmallCNN"]
