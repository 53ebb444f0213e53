"""Two CPU processes (gloo): synchronous data-parallel unlearning equals one process on the whole forget set,
whether started by torch.multiprocessing or by ``accelerate launch``, for plain models (erasus all-reduces)
and for models wrapped in DDP or FSDP2 with CPU offload (the wrapper syncs; the frozen reference is sharded)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from erasus.registry import get_strategy
from llm_helpers import DIST_NPO, WRAPPED_RUNS, distributed_npo_worker, wrapped_unlearn_worker


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_two_gloo_processes_match_single_process_npo(memorised, tmp_path):
    if not torch.distributed.is_available():
        pytest.skip("torch.distributed is not available")
    model, forget, _ = memorised
    torch.save(model.state_dict(), tmp_path / "start.pt")
    mp.spawn(distributed_npo_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    _check_ranks_match_single_process(model, forget, tmp_path)


def _check_ranks_match_single_process(model, forget, workdir) -> None:
    single = get_strategy("npo", **DIST_NPO).unlearn(model=model, forget_data=forget, steps=3, progress=False)
    ranks = [torch.load(os.path.join(workdir, f"rank{r}.pt")) for r in range(2)]
    for name, value in single.state_dict().items():
        torch.testing.assert_close(ranks[0][name], ranks[1][name], rtol=0, atol=0)
        torch.testing.assert_close(ranks[0][name], value, rtol=1e-4, atol=1e-6)
    assert any(not torch.equal(ranks[0][n], v) for n, v in model.state_dict().items())


def test_accelerate_launch_two_cpu_processes_match_single_process_npo(memorised, tmp_path):
    """The command the README documents, with configs/accelerate/ddp.yaml. ``--cpu`` would start one process
    (accelerate's multi-CPU mode needs mpirun); ``distributed_type: MULTI_GPU`` with no visible GPU runs
    torch.distributed.run, and PartialState picks gloo."""
    pytest.importorskip("accelerate")
    model, forget, _ = memorised
    torch.save(model.state_dict(), tmp_path / "start.pt")
    script = Path(__file__).with_name("accelerate_npo.py")
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    config = Path(__file__).resolve().parents[2] / "configs" / "accelerate" / "ddp.yaml"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config),
           "--main_process_port", str(_free_port()), str(script), str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    _check_ranks_match_single_process(model, forget, tmp_path)


@pytest.mark.parametrize("kind", ["ddp", "fsdp"])
def test_wrapped_models_match_single_process_run(memorised, tmp_path, kind):
    """NPO (frozen reference), RMU (reference activations, a subset of trained weights) and GradDiff with a KL
    retain term under DDP / FSDP2 with CPU offload: after 3 steps on each rank's half of forget and retain, the
    gathered weights equal one process's run on the whole sets (gradients averaged once, reference weights
    frozen), and a wrapped model is refused unless inplace=True."""
    if not torch.distributed.is_available():
        pytest.skip("torch.distributed is not available")
    model, forget, retain = memorised
    torch.save(model.state_dict(), tmp_path / "start.pt")
    mp.spawn(wrapped_unlearn_worker, args=(2, _free_port(), str(tmp_path), kind), nprocs=2, join=True)
    for name, opts in WRAPPED_RUNS.items():
        single = get_strategy(name, **opts).unlearn(model=model, forget_data=forget, retain_data=retain, steps=3,
                                                    progress=False)
        ranks = [torch.load(tmp_path / f"{kind}_{name}_rank{r}.pt") for r in range(2)]
        assert all(r["refused_copy"] for r in ranks)
        changed = False
        for key, value in single.state_dict().items():
            torch.testing.assert_close(ranks[0]["state"][key], ranks[1]["state"][key], rtol=0, atol=0)
            torch.testing.assert_close(ranks[0]["state"][key], value, rtol=1e-4, atol=1e-6, msg=f"{name}: {key}")
            changed |= not torch.equal(value, model.state_dict()[key])
        assert changed, f"{name} did not change the model: the comparison would be vacuous"


def test_wrapped_models_refused_before_work(memorised, tmp_path):
    """In a 1-process gloo group: a DDP-wrapped model without inplace=True and an FSDP1 model are refused with
    erasus errors naming the fix, and the model's weights are untouched."""
    import torch.distributed as dist
    from erasus.errors import ErasusTypeError, InvalidInputError
    from torch.distributed.fsdp import FullyShardedDataParallel

    model, forget, _ = memorised
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        before = {k: v.clone() for k, v in model.state_dict().items()}
        ddp = torch.nn.parallel.DistributedDataParallel(model)
        with pytest.raises(InvalidInputError, match="inplace=True"):
            get_strategy("npo").unlearn(model=ddp, forget_data=forget, steps=1, progress=False)
        with pytest.raises(InvalidInputError, match="lora= wraps"):
            get_strategy("npo").unlearn(model=ddp, forget_data=forget, steps=1, progress=False, inplace=True,
                                        lora={"r": 2})
        for k, v in model.state_dict().items():
            assert torch.equal(v, before[k])
        import copy

        fsdp1 = FullyShardedDataParallel(copy.deepcopy(model), device_id=torch.device("cpu"))
        with pytest.raises(ErasusTypeError, match="fsdp_version: 2"):
            get_strategy("npo").unlearn(model=fsdp1, forget_data=forget, steps=1, progress=False, inplace=True)
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("name", ["npo", "grad_diff"])
def test_accelerate_fsdp_launch_matches_single_process_run(memorised, tmp_path, name):
    """``accelerate launch --config_file configs/accelerate/fsdp.yaml``: accelerate's own FSDP2 preparation
    (its plugin from the yaml, ``fsdp2_prepare_model`` with CPU offload and rank 0's weights broadcast into the
    shards; tests/llm/accelerate_fsdp.py lifts only accelerate's accelerator-only gates), then NPO / GradDiff-KL
    with the frozen reference sharded: after 3 steps on each rank's half, the gathered weights equal one
    process's run on all rows."""
    pytest.importorskip("accelerate")
    model, forget, retain = memorised
    torch.save(model.state_dict(), tmp_path / "start.pt")
    script = Path(__file__).with_name("accelerate_fsdp.py")
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    config = Path(__file__).resolve().parents[2] / "configs" / "accelerate" / "fsdp.yaml"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config),
           "--main_process_port", str(_free_port()), str(script), str(tmp_path), name]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"accelerate_fsdp_{name}_rank{r}.pt") for r in range(2)]
    # 2 GPT2Blocks, one unit of the tied embedding / lm-head and the final norm (3 modules), the root; every
    # parameter a DTensor shard
    assert all(r["fsdp_units"] == 6 and r["sharded"] for r in ranks)
    single = get_strategy(name, **WRAPPED_RUNS[name]).unlearn(model=model, forget_data=forget, retain_data=retain,
                                                              steps=3, progress=False)
    changed = False
    for key, value in single.state_dict().items():
        torch.testing.assert_close(ranks[0]["state"][key], ranks[1]["state"][key], rtol=0, atol=0)
        torch.testing.assert_close(ranks[0]["state"][key], value, rtol=1e-4, atol=1e-6, msg=f"{name}: {key}")
        changed |= not torch.equal(value, model.state_dict()[key])
    assert changed


def test_accelerate_deepspeed_zero3_launch_matches_single_process_run(memorised, tmp_path):
    """``accelerate launch --config_file configs/accelerate/deepspeed_zero3.yaml`` with the CPU DeepSpeed config
    (``deepspeed_zero3_cpu.json``: ZeRO stage 3, no CUDA offload) on 2 gloo processes: accelerate's own
    ``deepspeed.initialize`` of a model built under ``zero.Init``, then NPO and GradDiff-KL through the engine
    (``engine.backward`` / ``engine.step``). After 3 steps on each rank's half the gathered weights equal one
    plain process's run on all rows, the mean of the two ranks' losses is that run's loss, the parameters stay
    partitioned, the frozen reference holds half the weights and still gives the starting model's logits, the
    engine's optimizer settings are given back, and refused or failing calls leave the engine as it was."""
    pytest.importorskip("accelerate")
    pytest.importorskip("deepspeed", reason="deepspeed is not installed (the `deepspeed` extra)")
    model, forget, retain = memorised
    torch.save(model.state_dict(), tmp_path / "start.pt")
    script = Path(__file__).with_name("accelerate_zero3.py")
    configs = Path(__file__).resolve().parents[2] / "configs" / "accelerate"
    # the venv's bin first on PATH: deepspeed's JIT build calls `ninja`, which the deepspeed wheel installs there
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", "DS_ACCELERATOR": "cpu",
           "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")}
    names = ["npo", "grad_diff"]
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(configs / "deepspeed_zero3.yaml"),
           "--deepspeed_config_file", str(configs / "deepspeed_zero3_cpu.json"),
           "--main_process_port", str(_free_port()), str(script), str(tmp_path), *names]
    # the first run JIT-builds deepspeed's shm_comm op (g++, ninja; minutes on a loaded machine), later ones
    # load it from ~/.cache/torch_extensions
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    total = sum(p.numel() for p in model.parameters())
    with torch.no_grad():
        start_logits = model.eval()(input_ids=forget.batch["input_ids"],
                                    attention_mask=forget.batch["attention_mask"]).logits
    for name in names:
        ranks = [torch.load(tmp_path / f"zero3_{name}_rank{r}.pt") for r in range(2)]
        for r in ranks:
            assert r["partitioned"] and r["still_partitioned"] and r["optimizer_kept"] and r["restored"], name
            errors = r["errors"]
            assert errors["copy"].startswith("InvalidInputError") and "inplace=True" in errors["copy"]
            assert errors["optimizer"].startswith("InvalidInputError") and "optimizer='sgd'" in errors["optimizer"]
            assert errors["rmu"].startswith("ErasusTypeError") and "fsdp.yaml" in errors["rmu"]
            assert errors["nonfinite"].startswith("NonFiniteError") and "step 1" in errors["nonfinite"]
            # this rank's partitions: ceil(numel / 2) per parameter
            assert r["reference_numel"] <= total // 2 + len(r["state"])
            torch.testing.assert_close(r["reference_logits"], start_logits, rtol=1e-5, atol=1e-5)
        single = get_strategy(name, **WRAPPED_RUNS[name])
        out = single.unlearn(model=model, forget_data=forget, retain_data=retain, steps=3, progress=False)
        mean_loss = [(a + b) / 2 for a, b in zip(ranks[0]["history"], ranks[1]["history"])]
        torch.testing.assert_close(torch.tensor(mean_loss), torch.tensor(list(single.history_)), rtol=1e-5,
                                   atol=1e-5)
        changed = False
        for key, value in out.named_parameters():
            torch.testing.assert_close(ranks[0]["state"][key], ranks[1]["state"][key], rtol=0, atol=0)
            torch.testing.assert_close(ranks[0]["state"][key], value.detach(), rtol=1e-4, atol=1e-6,
                                       msg=f"{name}: {key}")
            changed |= not torch.equal(value.detach(), dict(model.named_parameters())[key].detach())
        assert changed, f"{name} did not change the model: the comparison would be vacuous"
