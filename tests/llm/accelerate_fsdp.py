"""Run by ``accelerate launch --config_file configs/accelerate/fsdp.yaml`` (no visible GPU) in test_distributed.py:
accelerate's own FSDP2 preparation (``Accelerator.prepare`` -> ``fsdp2_prepare_model``: GPT2Block units, the
embedding / final-norm / lm-head unit, the root, CPU offload, rank 0's weights loaded into the shards) from the
plugin the launcher builds out of fsdp.yaml, then one strategy (NPO, or GradDiff with a KL retain term) whose
frozen reference is sharded the same way.

Accelerate sets ``DistributedType.FSDP`` only on accelerator devices (``AcceleratorState`` on CPUs is
``MULTI_CPU`` and ignores the plugin), and its offload policy pins memory, which needs CUDA. This script lifts
exactly those two CPU gates and nothing else: the state gets the launcher's plugin and FSDP type, the offload
policy ``pin_memory=False``.
"""

from __future__ import annotations

import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
from llm_helpers import FORGET, RETAIN, WRAPPED_RUNS, full_state, make_tokenizer, tiny_gpt2  # noqa: E402

def main(workdir: str, name: str) -> None:
    from accelerate import Accelerator
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin
    from torch.distributed.fsdp import CPUOffloadPolicy

    from erasus.data import subset
    from erasus.data.llm import LMDataset
    from erasus.registry import get_strategy

    assert os.environ.get("ACCELERATE_USE_FSDP") == "true", "not launched with configs/accelerate/fsdp.yaml"
    torch.set_num_threads(1)
    tok = make_tokenizer()
    forget = LMDataset([{"prompt": q, "answer": a} for q, a in FORGET], tok, max_length=32)
    retain = LMDataset([{"prompt": q, "answer": a} for q, a in RETAIN], tok, max_length=32)
    plugin = FullyShardedDataParallelPlugin()  # from the launcher's FSDP_* environment (fsdp.yaml)
    assert plugin.fsdp_version == 2 and plugin.cpu_offload is not None and plugin.cpu_ram_efficient_loading
    plugin.cpu_offload = CPUOffloadPolicy(pin_memory=False)
    accelerator = Accelerator(cpu=True)
    accelerator.state.fsdp_plugin = plugin
    accelerator.state.distributed_type = DistributedType.FSDP
    assert accelerator.is_fsdp2 and torch.distributed.get_world_size() == 2
    rank, world = accelerator.process_index, accelerator.num_processes
    model = tiny_gpt2(len(tok))
    if rank == 0:  # cpu_ram_efficient_loading: rank 0's weights are broadcast into every shard
        model.load_state_dict(torch.load(os.path.join(workdir, "start.pt")))
    # accelerate prepares an FSDP2 model only together with an optimizer (one model per Accelerator); the
    # strategy builds its own optimizer over the sharded parameters, so this one is never stepped
    model, _ = accelerator.prepare(model, torch.optim.SGD(model.parameters(), lr=0.0))
    units = sum(type(m).__name__.startswith("FSDP") for m in model.modules())
    mine = range(rank, len(FORGET), world)
    get_strategy(name, **WRAPPED_RUNS[name]).unlearn(model=model, forget_data=subset(forget, mine),
                                                     retain_data=subset(retain, mine), steps=3, progress=False,
                                                     inplace=True)
    sharded = all(type(p).__name__ == "DTensor" for p in model.parameters())
    torch.save({"state": full_state(model), "fsdp_units": units, "sharded": sharded},
               os.path.join(workdir, f"accelerate_fsdp_{name}_rank{rank}.pt"))
    accelerator.wait_for_everyone()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
