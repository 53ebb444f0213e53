"""Selection beyond one machine: two-round GreeDi / composable k-center coresets whose partitions are Ray
tasks or torch.distributed ranks running the Rust core. Needs the ``distributed`` extra (``ray``) for
``backend="ray"``; accelerate configs for DDP / FSDP / DeepSpeed unlearning live in ``configs/accelerate``."""

from .features import extract_feature_shards
from .select import select_distributed

__all__ = ["extract_feature_shards", "select_distributed"]
