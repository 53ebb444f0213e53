"""Run by ``accelerate launch --multi_gpu --num_processes 2`` (no visible GPU) in test_distributed.py: each
process unlearns its shard of the forget set with NPO; the strategy averages gradients across processes."""

from __future__ import annotations

import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
from llm_helpers import npo_on_this_rank  # noqa: E402


def main(workdir: str) -> None:
    from accelerate import PartialState

    state = PartialState()  # initializes torch.distributed (gloo without GPUs) from the launcher's environment
    dist = torch.distributed
    assert dist.is_initialized() and dist.get_world_size() == 2, "accelerate launch did not start 2 processes"
    npo_on_this_rank(workdir)
    state.wait_for_everyone()


if __name__ == "__main__":
    main(sys.argv[1])
