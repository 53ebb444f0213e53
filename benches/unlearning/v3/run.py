"""Protocol v3 (issue 19), cut to what a loaded 2-core machine allows: time-to-target with ``until=``.

    OMP_NUM_THREADS=1 python benches/unlearning/v3/run.py --seeds 0 --out benches/unlearning/v3/results_seed0.json

Train a model (default an MLP, ``--arch cnn`` for SmallCNN) on Fashion-MNIST once (cached under ``benches/unlearning/.cache/v3``), retrain the oracle once
without the forget class (timed); then per seed (selection, probes, shuffling, unlearning) for each strategy and
learning rate of the grid

1. unlearn the **full** forget set for up to ``--cap`` steps, recording SalUn's Avg. Gap (points) to the oracle
   every ``--every`` steps on probe subsets (``until`` with an unreachable target: the whole trajectory);
   ``best`` is the lowest Avg. Gap over lr x steps (step 0 excluded), the target is ``best + 1`` point;
2. unlearn each **coreset** (``--fraction`` of the forget set, per selector) with
   ``until={"avg_gap_to": oracle, "below": target}``: it stops at the first check within 1 point of the full
   set's best. Time-to-target = features + selection + unlearning up to that check (probe time excluded),
   the cheapest over the lr grid; the full set's is read off its trajectory at the same checks.

Results go to ``results.json`` after every run (a rerun skips what is there); ``table.py`` writes the tables.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset
from tqdm.auto import tqdm

import erasus
from erasus.errors import NonFiniteError, TargetNotReachedWarning
from erasus.experiments import SmallCNN
from erasus.experiments.datasets import load_fashion_mnist
from erasus.selectors._common import ContextSelector
from erasus.selectors.base import features_from_model

HERE = Path(__file__).resolve().parent
CACHE = Path(os.environ.get("ERASUS_V3_CACHE") or HERE.parent / ".cache" / "v3")  # --cache-dir overrides
BASE_LR = {"gradient_ascent": 2e-3, "grad_diff": 5e-3, "scrub": 5e-3, "salun": 1e-2, "finetune": 2e-2}


def _uptime() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


class PoolCNN(torch.nn.Module):
    """conv(16) -> max-pool -> conv(32) -> max-pool -> linear(64) -> linear(10): the full-size protocol's CNN.

    SmallCNN's global 2x2 average pool keeps too little of the image for 90% on Fashion-MNIST; two max-pooled
    convolutions (about 1.1M multiply-adds per image) reach it in a few epochs on one CPU thread.
    """

    def __init__(self) -> None:
        super().__init__()
        self.body = torch.nn.Sequential(
            torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
            torch.nn.Flatten(), torch.nn.Linear(32 * 7 * 7, 64), torch.nn.ReLU())
        self.head = torch.nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


class MLP(torch.nn.Module):
    """784 -> 256 -> 128 -> 10: a tenth of SmallCNN's multiply-adds, which is what the loaded machine allowed."""

    def __init__(self) -> None:
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 256), torch.nn.ReLU(),
                                        torch.nn.Linear(256, 128), torch.nn.ReLU())
        self.head = torch.nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def _make(arch: str) -> torch.nn.Module:
    return {"cnn": lambda: SmallCNN(in_channels=1, num_classes=10), "cnn2": PoolCNN, "mlp": MLP}[arch]()


def _trained(name: str, data: TensorDataset, *, seed: int, epochs: int, arch: str, lr: float, weight_decay: float,
             lr_drop_at: int, log) -> tuple[torch.nn.Module, float]:
    """Train (or load from the cache) a model; returns it with its training seconds (LOADED wall).

    Adam, batch 128, ``epochs`` shuffled passes; from epoch ``lr_drop_at`` (0-based; 0 = never) on, lr / 10.
    The model, optimizer and elapsed seconds (wall and this process's CPU) are checkpointed after every epoch,
    so a killed run resumes where it stopped (its seconds are the sum over the epochs' runs).
    """
    CACHE.mkdir(parents=True, exist_ok=True)
    path, meta, ckpt = CACHE / f"{name}.pt", CACHE / f"{name}.json", CACHE / f"{name}.ckpt"
    torch.manual_seed(seed)
    model = _make(arch)
    if path.exists() and meta.exists():
        model.load_state_dict(torch.load(path, weights_only=True))
        return model.eval(), float(json.loads(meta.read_text())["train_s"])
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    done, seconds, cpu = 0, 0.0, 0.0
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        done, seconds, cpu = int(state["epoch"]), float(state["seconds"]), float(state.get("cpu_s", 0.0))
    model.train()
    for epoch in range(done, epochs):
        for group in opt.param_groups:  # set from the epoch index, so a resumed run follows the same schedule
            group["lr"] = lr * (0.1 if lr_drop_at and epoch >= lr_drop_at else 1.0)
        t0, c0 = time.perf_counter(), time.process_time()
        # one generator per epoch, so a resumed run shuffles exactly as an uninterrupted one
        loader = torch.utils.data.DataLoader(data, batch_size=128, shuffle=True,
                                             generator=torch.Generator().manual_seed(seed * 1000 + epoch))
        for x, y in tqdm(loader, desc=f"{name} epoch {epoch + 1}/{epochs}", mininterval=30, leave=False):
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
        seconds += time.perf_counter() - t0
        cpu += time.process_time() - c0
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "epoch": epoch + 1, "seconds": seconds,
                    "cpu_s": cpu}, ckpt)
        log(f"{name}: epoch {epoch + 1}/{epochs} done, {seconds:.0f}s wall (LOADED), {cpu:.0f} CPU s so far")
    torch.save(model.state_dict(), path)
    meta.write_text(json.dumps({"train_s": seconds, "train_cpu_s": cpu, "load": _uptime(), "epochs": epochs,
                                "lr": lr, "lr_drop_at": lr_drop_at, "weight_decay": weight_decay, "n": len(data),
                                "threads": torch.get_num_threads()}))
    ckpt.unlink()
    log(f"trained {name} in {seconds:.0f}s wall (LOADED), {cpu:.0f} CPU s (load {_uptime()})")
    return model.eval(), seconds


def _accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float(torch.cat([model(x[i:i + 1024]).argmax(1) for i in range(0, len(x), 1024)]).eq(y).double().mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit-train", type=int, default=10000, help="0: the full 60,000")
    ap.add_argument("--limit-test", type=int, default=2000, help="0: the full 10,000")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--arch", choices=["mlp", "cnn", "cnn2"], default="mlp")
    ap.add_argument("--train-lr", type=float, default=3e-3)
    ap.add_argument("--weight-decay", type=float, default=5e-4)
    ap.add_argument("--lr-drop-at", type=int, default=0,
                    help="0-based epoch from which the training lr is divided by 10 (0: constant lr)")
    ap.add_argument("--cache-dir", help="where trained models are cached (default $ERASUS_V3_CACHE, else "
                                        "benches/unlearning/.cache/v3)")
    ap.add_argument("--train-only", choices=["original", "oracle", "both"],
                    help="train (and cache) these models, then stop (two processes may train the two at once)")
    ap.add_argument("--model-seed", type=int, default=0,
                    help="seed of the original model and the oracle, shared by every seed (they are trained once)")
    ap.add_argument("--forget-class", type=int, default=0)
    ap.add_argument("--scenario", choices=["class", "random"], default="class",
                    help="forget one class, or a random --forget-fraction of the training set")
    ap.add_argument("--forget-fraction", type=float, default=0.1)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--strategies", nargs="+", default=["gradient_ascent", "grad_diff"])
    ap.add_argument("--selectors", nargs="+", default=["random", "kcenter"])
    ap.add_argument("--fraction", type=float, default=0.1)
    ap.add_argument("--lr-scales", type=float, nargs="+", default=[0.3, 1.0])
    ap.add_argument("--cap", type=int, default=100)
    ap.add_argument("--every", type=int, default=10)
    ap.add_argument("--probe", type=int, default=500)
    ap.add_argument("--out", default=str(HERE / "results.json"))
    args = ap.parse_args()
    global CACHE
    if args.cache_dir:
        CACHE = Path(args.cache_dir)
    torch.set_num_threads(1)
    out = Path(args.out)
    results = json.loads(out.read_text()) if out.exists() else {"runs": {}, "seeds": {}}
    results["config"] = vars(args) | {"machine": platform.platform(), "cpus": os.cpu_count()}

    def log(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')} load {_uptime()}] {msg}", flush=True)

    def save() -> None:
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(results, indent=1, default=float))
        tmp.replace(out)

    limit_train, limit_test = args.limit_train or None, args.limit_test or None
    xtr, ytr, xte, yte = load_fashion_mnist(limit_train=limit_train, limit_test=limit_test, seed=0)
    # RUM's held-out-retrain proxy needs samples no model trained on and no metric reads: test images left out
    # of the limited test split (none are left at full size, where `memorization` is refused)
    _, _, xall, yall = load_fashion_mnist(seed=0)
    used = np.random.default_rng(0).choice(len(yall), size=min(limit_test or len(yall), len(yall)), replace=False)
    spare = np.setdiff1d(np.arange(len(yall)), used)[:2000]  # load_fashion_mnist's own draw of the test subset
    if "memorization" in args.selectors and len(spare) == 0:
        ap.error("--selectors memorization needs held-out images: pass --limit-test below 10000")
    heldout = TensorDataset(xall[spare], yall[spare])
    if args.scenario == "class":
        is_forget = (ytr == args.forget_class).numpy()
    else:
        is_forget = np.zeros(len(ytr), dtype=bool)
        is_forget[np.random.default_rng(10_000 + args.model_seed).choice(
            len(ytr), size=int(round(args.forget_fraction * len(ytr))), replace=False)] = True
    forget = TensorDataset(xtr[is_forget], ytr[is_forget])
    retain = TensorDataset(xtr[~is_forget], ytr[~is_forget])
    what = f"class {args.forget_class}" if args.scenario == "class" else f"random {args.forget_fraction:.0%}"
    log(f"Fashion-MNIST {len(ytr)} train / {len(yte)} test; forget {what}: {len(forget)} images")

    tag = (f"{args.arch}_n{len(ytr)}_e{args.epochs}_lr{args.train_lr:g}_wd{args.weight_decay:g}"
           + (f"_drop{args.lr_drop_at}" if args.lr_drop_at else "") + f"_s{args.model_seed}")
    recipe = {"epochs": args.epochs, "arch": args.arch, "lr": args.train_lr, "weight_decay": args.weight_decay,
              "lr_drop_at": args.lr_drop_at, "log": log}
    if args.train_only != "oracle":
        original, train_s = _trained(f"original_{tag}", TensorDataset(xtr, ytr), seed=args.model_seed, **recipe)
        log(f"original: test acc {_accuracy(original, xte, yte):.4f} ({train_s:.0f}s)")
    forget_tag = f"c{args.forget_class}" if args.scenario == "class" else f"r{args.forget_fraction:g}"
    if args.train_only == "original":
        return
    oracle, retrain_s = _trained(f"oracle_{forget_tag}_{tag}", retain, seed=args.model_seed, **recipe)
    log(f"oracle: test acc {_accuracy(oracle, xte, yte):.4f}, forget acc {_accuracy(oracle, *forget.tensors):.4f} "
        f"({retrain_s:.0f}s)")
    if args.train_only:
        return
    for seed in args.seeds:
        rng = np.random.default_rng(seed)

        def probe(ds: TensorDataset) -> TensorDataset:
            idx = np.sort(rng.choice(len(ds), size=min(args.probe, len(ds)), replace=False))
            return TensorDataset(*(t[idx] for t in ds.tensors))

        probes = {"data": probe(forget), "retain": probe(retain), "test": probe(TensorDataset(xte, yte))}
        results["seeds"][str(seed)] = {
            "train_s": train_s, "retrain_s": retrain_s,
            "original_test_acc": _accuracy(original, xte, yte), "oracle_test_acc": _accuracy(oracle, xte, yte),
            "original_forget_acc": _accuracy(original, *forget.tensors),
            "oracle_forget_acc": _accuracy(oracle, *forget.tensors)}
        save()
        log(f"seed {seed}: {results['seeds'][str(seed)]}")
        features: dict[str, tuple[np.ndarray, float]] = {}

        selector_options = {"memorization": {"proxy": "heldout_retrain", "heldout_data": heldout,
                                             "finetune_epochs": 5, "finetune_lr": 0.01, "keep": "stratified"}}

        def features_for(selector: str) -> tuple[np.ndarray | None, float]:
            sel = erasus.get_selector(selector, **selector_options.get(selector, {}))
            if isinstance(sel, ContextSelector):
                return None, 0.0  # computes its scores from the model: charged in the unlearner's selection time
            if not sel.needs_features:
                return None, 0.0
            kind = sel.default_features
            if kind not in features:
                t0 = time.perf_counter()
                feats = features_from_model(original, forget, kind=kind, seed=seed,
                                            **({"proj_dim": 256} if kind == "gradients" else {}))
                features[kind] = (np.asarray(feats), time.perf_counter() - t0)
            return features[kind]

        for strategy in args.strategies:
            # 1. the full forget set: the whole trajectory, for its best Avg. Gap and its time-to-target
            for scale in args.lr_scales:
                key = f"{seed}|{strategy}|full|{scale}"
                if key in results["runs"]:
                    continue
                lr = BASE_LR[strategy] * scale
                un = erasus.ErasusUnlearner(original, strategy=strategy, selector="full", seed=seed, lr=lr,
                                            batch_size=64)
                diverged = None
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", TargetNotReachedWarning)
                    try:
                        un.fit(forget, retain, prune_ratio=1.0, steps=args.cap, progress=False,
                               until={"avg_gap_to": oracle, "below": -1.0, "every": args.every, **probes})
                    except NonFiniteError as exc:  # the checks before the NaN are kept by the strategy
                        diverged = str(exc)
                results["runs"][key] = {"lr": lr, "checks": un.strategy.history_.checks, "timings": un.timings_,
                                        "diverged": diverged, "load": _uptime()}
                save()
                log(f"{key}: best gap {min([c['value'] for c in un.strategy.history_.checks[1:]] or [np.nan]):.2f}"
                    + (f" (diverged: {diverged})" if diverged else ""))
            full_runs = [results["runs"][f"{seed}|{strategy}|full|{s}"] for s in args.lr_scales]
            best = min(c["value"] for r in full_runs for c in r["checks"][1:])
            target = best + 1.0
            # 2. coresets: until the full set's best + 1 point
            for selector in args.selectors:
                feats, feat_s = features_for(selector)
                for scale in args.lr_scales:
                    key = f"{seed}|{strategy}|{selector}|{scale}"
                    if key in results["runs"]:
                        continue
                    lr = BASE_LR[strategy] * scale
                    un = erasus.ErasusUnlearner(original, strategy=strategy, selector=selector, seed=seed, lr=lr,
                                                batch_size=64, selector_options=selector_options.get(selector))
                    diverged = None
                    t0 = time.perf_counter()
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", TargetNotReachedWarning)
                        try:
                            un.fit(forget, retain, prune_ratio=args.fraction, features=feats, steps=args.cap,
                                   progress=False, until={"avg_gap_to": oracle, "below": target,
                                                          "every": args.every, **probes})
                        except NonFiniteError as exc:
                            diverged = str(exc)
                    checks = un.strategy.history_.checks
                    timings = dict(un.timings_) if not diverged else {"total_s": time.perf_counter() - t0}
                    if not diverged:
                        timings["features_s"] = feat_s
                    results["runs"][key] = {"lr": lr, "checks": checks, "target": target, "timings": timings,
                                            "reached": bool(checks and checks[-1]["met"]), "diverged": diverged,
                                            "load": _uptime()}
                    save()
                    log(f"{key}: reached={results['runs'][key]['reached']} at step {checks[-1]['step']} "
                        f"({checks[-1]['elapsed_s']:.1f}s), target {target:.2f}" + (" (diverged)" if diverged else ""))


if __name__ == "__main__":
    main()
