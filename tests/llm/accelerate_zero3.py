"""Run by ``accelerate launch --config_file configs/accelerate/deepspeed_zero3.yaml --deepspeed_config_file
configs/accelerate/deepspeed_zero3_cpu.json`` (no visible GPU, ``DS_ACCELERATOR=cpu``) in test_distributed.py:
accelerate's own DeepSpeed preparation (``Accelerator.prepare`` -> ``deepspeed.initialize`` with ZeRO stage 3
from the launcher's plugin; the tiny model built under ``zero.Init``, so it is partitioned from the start and
rank 0's weights are loaded with ``GatheredParameters``), then one strategy (NPO, or GradDiff with a KL retain
term) whose frozen reference is this rank's copy of the starting partitions. Writes the gathered weights, the
losses and whether the parameters were partitioned before and after.
"""

from __future__ import annotations

import os
import sys

import torch
# zero.Init patches torch.Tensor.__new__, which torch._dynamo rejects when transformers first imports it inside
# that context: import it before
import torch._dynamo  # noqa: F401

sys.path.insert(0, os.path.dirname(__file__))
from llm_helpers import FORGET, RETAIN, WRAPPED_RUNS, make_tokenizer, tiny_gpt2  # noqa: E402


def main(workdir: str, names: list[str]) -> None:
    from accelerate import Accelerator
    from accelerate.utils import DistributedType, InitProcessGroupKwargs

    from erasus.data.llm import LMDataset

    assert os.environ.get("ACCELERATE_USE_DEEPSPEED") == "true", "not launched with deepspeed_zero3.yaml"
    torch.set_num_threads(1)
    tok = make_tokenizer()
    forget = LMDataset([{"prompt": q, "answer": a} for q, a in FORGET], tok, max_length=32)
    retain = LMDataset([{"prompt": q, "answer": a} for q, a in RETAIN], tok, max_length=32)
    # with no accelerator device accelerate picks no backend (and then counts one process); naming gloo, its
    # documented process-group option, is the whole CPU adaptation: deepspeed.init_distributed runs on it
    accelerator = Accelerator(kwargs_handlers=[InitProcessGroupKwargs(backend="gloo")])
    assert accelerator.distributed_type == DistributedType.DEEPSPEED and accelerator.num_processes == 2, \
        (accelerator.distributed_type, accelerator.num_processes)
    for name in names:
        _run(accelerator, workdir, name, forget, retain, tok)
        accelerator.free_memory()  # one engine per Accelerator.prepare call
    accelerator.wait_for_everyone()


def _run(accelerator, workdir: str, name: str, forget, retain, tok) -> None:
    import deepspeed

    from erasus.data import subset
    from erasus.distributed.zero3 import Zero3Reference
    from erasus.errors import ErasusTypeError, InvalidInputError
    from erasus.registry import get_strategy

    rank, world = accelerator.process_index, accelerator.num_processes
    with deepspeed.zero.Init(config_dict_or_path=accelerator.state.deepspeed_plugin.deepspeed_config):
        model = tiny_gpt2(len(tok))  # zero3_init_flag: parameters partitioned as they are created
    start = torch.load(os.path.join(workdir, "start.pt"))
    with deepspeed.zero.GatheredParameters(list(model.parameters()), modifier_rank=0):
        if rank == 0:
            model.load_state_dict(start)
    opts = WRAPPED_RUNS[name]
    engine, _ = accelerator.prepare(model, torch.optim.SGD(model.parameters(), lr=0.123, momentum=0.5))
    partitioned = all(p.numel() == 0 for p in engine.module.parameters())
    groups_before = [{k: v for k, v in g.items() if k != "params"} for g in engine.optimizer.param_groups]
    mine = range(rank, len(FORGET), world)
    data = dict(forget_data=subset(forget, mine), retain_data=subset(retain, mine), steps=3, progress=False)
    strategy = get_strategy(name, **opts)
    before = _gathered(engine)
    errors = {}
    # refused before or during work, each leaving the engine as it was: a copy of a sharded engine; a strategy
    # whose optimizer differs from the engine's; RMU (its own optimizer over chosen layers); a failing in-place
    # call (lr=1e30 makes the second step's loss non-finite)
    for case, call in {
        "copy": lambda: strategy.unlearn(model=engine, **data),
        "optimizer": lambda: get_strategy(name, **{**opts, "optimizer": "adamw"}).unlearn(
            model=engine, inplace=True, **data),
        "rmu": lambda: get_strategy("rmu", **WRAPPED_RUNS["rmu"]).unlearn(model=engine, inplace=True, **data),
        "nonfinite": lambda: strategy.unlearn(model=engine, inplace=True, **{**data, "lr": 1e30}),
    }.items():
        try:
            call()
            errors[case] = None
        except (ErasusTypeError, InvalidInputError) as exc:
            errors[case] = f"{type(exc).__name__}: {exc}"
    after = _gathered(engine)
    restored = all(torch.equal(before[k], after[k]) for k in before)
    reference = Zero3Reference(engine)  # the starting weights, this rank's partitions only
    out = strategy.unlearn(model=engine, inplace=True, **data)
    assert out is engine
    batch = {k: v.to(accelerator.device) for k, v in forget.batch.items()}
    ref_logits = reference(lambda m: m(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits)
    groups_after = [{k: v for k, v in g.items() if k != "params"} for g in engine.optimizer.param_groups]
    torch.save({"state": _gathered(engine), "history": list(strategy.history_), "errors": errors,
                "restored": restored, "partitioned": partitioned,
                "still_partitioned": all(p.numel() == 0 for p in engine.module.parameters()),
                "optimizer_kept": groups_before == groups_after, "reference_logits": ref_logits,
                "reference_numel": sum(f.numel() for f in reference.frozen)},
               os.path.join(workdir, f"zero3_{name}_rank{rank}.pt"))


def _gathered(engine) -> dict:
    """Full copies of the engine's weights (a collective: every rank calls it)."""
    import deepspeed

    params = dict(engine.module.named_parameters())
    with deepspeed.zero.GatheredParameters(list(params.values())):
        return {k: v.detach().clone() for k, v in params.items()}


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
