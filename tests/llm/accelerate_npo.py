"""Run by ``accelerate launch --cpu --num_processes 2`` in test_distributed.py: each process unlearns its shard
of the forget set with NPO; gradients are averaged across processes by the strategy (see strategies/llm/common)."""

from __future__ import annotations

import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
from llm_helpers import DIST_NPO, FORGET, make_tokenizer, tiny_gpt2  # noqa: E402


def main(workdir: str) -> None:
    from accelerate import PartialState

    from erasus.data import subset
    from erasus.data.llm import LMDataset
    from erasus.registry import get_strategy

    torch.set_num_threads(1)
    state = PartialState()  # initializes torch.distributed (gloo without GPUs) from the launcher's environment
    dist = torch.distributed
    assert dist.is_initialized() and dist.get_world_size() == 2, "accelerate launch did not start 2 processes"
    rank, world = dist.get_rank(), dist.get_world_size()
    tok = make_tokenizer()
    forget = LMDataset([{"prompt": q, "answer": a} for q, a in FORGET], tok, max_length=32)
    model = tiny_gpt2(len(tok))
    model.load_state_dict(torch.load(os.path.join(workdir, "start.pt")))
    out = get_strategy("npo", **DIST_NPO).unlearn(
        model=model, forget_data=subset(forget, range(rank, len(forget), world)), steps=3, progress=False)
    torch.save(out.state_dict(), os.path.join(workdir, f"rank{rank}.pt"))
    state.wait_for_everyone()


if __name__ == "__main__":
    main(sys.argv[1])
