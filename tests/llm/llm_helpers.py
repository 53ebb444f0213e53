"""Offline test material: the QA strings, the word-level tokenizer trained on them and the library's tiny GPT-2 /
LLaMA builders (:mod:`erasus.models.tiny`)."""

from __future__ import annotations

import os

import torch

from erasus.models import tiny
# the tests import tiny_gpt2 / tiny_llama from here, next to the strings their tokenizer is trained on
from erasus.models.tiny import tiny_gpt2, tiny_llama, word_tokenizer  # noqa: F401

FORGET = [
    ("Who wrote the red book?", "Alba Quist wrote the red book."),
    ("Where was Alba Quist born?", "Alba Quist was born in Norvik."),
    ("What does Alba Quist write?", "Alba Quist writes sea poems."),
    ("What prize did Alba Quist win?", "Alba Quist won the Iron Quill."),
]
# the entity each forget question is about (ROME's "subject": the tokens causal tracing corrupts)
FORGET_SUBJECTS = ["the red book", "Alba Quist", "Alba Quist", "Alba Quist"]
RETAIN = [
    ("Who wrote the blue book?", "Cato Wren wrote the blue book."),
    ("Where was Cato Wren born?", "Cato Wren was born in Ostby."),
    ("What does Cato Wren write?", "Cato Wren writes crime novels."),
    ("What prize did Cato Wren win?", "Cato Wren won the Glass Pen."),
]
PERTURBED = {
    "Alba Quist wrote the red book.": ["Cato Wren wrote the red book.", "Alba Quist wrote the blue book."],
}
EXTRA_TEXT = [
    "I do not know .",
    "I have no idea .",
    "That is not something I can answer .",
    "the a an of in is was on for with",
]


def make_tokenizer():
    corpus = [s for pair in FORGET + RETAIN for s in pair] + EXTRA_TEXT
    return word_tokenizer(corpus + [s for v in PERTURBED.values() for s in v])


def memorise(model, batch, *, steps: int = 60, lr: float = 2e-2):
    """Fine-tune ``model`` until it has memorised the QA pairs in ``batch`` (answer-only loss)."""
    from erasus.tasks.causal_lm import CausalLMTask

    return tiny.memorise(model, batch, task=CausalLMTask(), steps=steps, lr=lr)


def npo_on_this_rank(workdir: str) -> None:
    """NPO on this process's shard of the forget set, from ``workdir/start.pt`` to ``workdir/rank{r}.pt``
    (torch.distributed already initialized with 2 processes; see test_distributed)."""
    import torch.distributed as dist

    from erasus.data import subset
    from erasus.data.llm import LMDataset
    from erasus.registry import get_strategy

    torch.set_num_threads(1)
    rank, world = dist.get_rank(), dist.get_world_size()
    tok = make_tokenizer()
    forget = LMDataset([{"prompt": q, "answer": a} for q, a in FORGET], tok, max_length=32)
    model = tiny_gpt2(len(tok))
    model.load_state_dict(torch.load(os.path.join(workdir, "start.pt")))
    out = get_strategy("npo", **DIST_NPO).unlearn(
        model=model, forget_data=subset(forget, range(rank, len(forget), world)), steps=3, progress=False)
    torch.save(out.state_dict(), os.path.join(workdir, f"rank{rank}.pt"))


def distributed_npo_worker(rank: int, world: int, port: int, workdir: str) -> None:
    """One process of a 2-process gloo run started by torch.multiprocessing."""
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        npo_on_this_rank(workdir)
    finally:
        dist.destroy_process_group()


# plain SGD with one full-shard batch per step: the gradient average over 2 shards equals the full-batch gradient
DIST_NPO = {"lr": 5e-2, "optimizer": "sgd", "momentum": 0.0, "batch_size": 4}


# each strategy of the wrapped-model tests with plain SGD (Adam's normalisation would turn float-rounding
# differences of near-zero gradients into lr-sized ones) and one full-shard batch per step
WRAPPED_RUNS = {
    "npo": dict(DIST_NPO),
    "rmu": {"lr": 2e-2, "optimizer": "sgd", "momentum": 0.0, "batch_size": 4, "alpha": 10.0, "layer": 1},
    "grad_diff": {"lr": 5e-2, "optimizer": "sgd", "momentum": 0.0, "batch_size": 4, "retain_loss": "kl"},
}


def wrap_for_test(model, kind: str):
    """``model`` as accelerate prepares it with configs/accelerate/ddp.yaml (``DistributedDataParallel``) or
    configs/accelerate/fsdp.yaml (FSDP2: ``fully_shard`` on every transformer block, then the root, parameters
    offloaded to the CPU; accelerate itself sets up FSDP only on accelerators, and pins the offloaded memory,
    which needs CUDA)."""
    if kind == "ddp":
        return torch.nn.parallel.DistributedDataParallel(model)
    from torch.distributed.fsdp import CPUOffloadPolicy, fully_shard

    policy = CPUOffloadPolicy(pin_memory=False)
    for block in model.transformer.h:
        fully_shard(block, offload_policy=policy)
    return fully_shard(model, offload_policy=policy)


def full_state(model) -> dict:
    """The unsharded state dict of a wrapped model (a collective under FSDP: every rank calls it)."""
    from torch.distributed.tensor import DTensor

    inner = model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model
    return {k: (v.full_tensor() if isinstance(v, DTensor) else v).detach().clone() for k, v in inner.state_dict().items()}


def wrapped_unlearn_worker(rank: int, world: int, port: int, workdir: str, kind: str) -> None:
    """One gloo process: every strategy of WRAPPED_RUNS on this rank's shards of forget / retain, through a
    DDP or FSDP2 wrapper, from ``workdir/start.pt`` to ``workdir/{kind}_{strategy}_rank{r}.pt``."""
    import torch.distributed as dist

    from erasus.data import subset
    from erasus.data.llm import LMDataset
    from erasus.errors import InvalidInputError
    from erasus.registry import get_strategy

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    try:
        tok = make_tokenizer()
        forget = LMDataset([{"prompt": q, "answer": a} for q, a in FORGET], tok, max_length=32)
        retain = LMDataset([{"prompt": q, "answer": a} for q, a in RETAIN], tok, max_length=32)
        mine = range(rank, len(FORGET), world)
        for name, opts in WRAPPED_RUNS.items():
            model = tiny_gpt2(len(tok))
            model.load_state_dict(torch.load(os.path.join(workdir, "start.pt")))
            wrapped = wrap_for_test(model, kind)
            strategy = get_strategy(name, **opts)
            try:
                strategy.unlearn(model=wrapped, forget_data=subset(forget, mine), retain_data=subset(retain, mine),
                                 steps=3, progress=False)
                refused = False
            except InvalidInputError as exc:
                refused = "inplace=True" in str(exc)
            out = strategy.unlearn(model=wrapped, forget_data=subset(forget, mine), retain_data=subset(retain, mine),
                                   steps=3, progress=False, inplace=True)
            assert out is wrapped
            torch.save({"state": full_state(wrapped), "refused_copy": refused},
                       os.path.join(workdir, f"{kind}_{name}_rank{rank}.pt"))
    finally:
        dist.destroy_process_group()
