"""Protocol v3 (issue 19) on full-size Fashion-MNIST: time-to-target with ``until=``, six strategies.

    # models once (resumable per epoch; --train-only oracle [--scenario random] in parallel processes)
    OMP_NUM_THREADS=1 python run.py --limit-train 0 --limit-test 0 --arch cnn2 --epochs 6 --lr-drop-at 5 \
        --train-lr 1e-3 --weight-decay 0 --cache-dir /work/cache/v3 --train-only original
    # one process per seed
    OMP_NUM_THREADS=1 RAYON_NUM_THREADS=1 python run.py ...same model flags... --seeds 0 --fractions 0.1 \
        --selectors random kcenter herding craig facility_location el2n --out full6/class_s0.json

Models are trained once and cached under ``--cache-dir`` (default ``$ERASUS_V3_CACHE``, else
``benches/unlearning/.cache/v3``), with their training time in CPU seconds and LOADED wall. Then per seed
(probes, selection, shuffling, unlearning), for each strategy and each value of its ``GRID`` (learning rate;
SSD: alpha):

1. the **full** forget set for up to ``--cap`` steps, recording SalUn's Avg. Gap (points) to the oracle every
   ``--every`` steps on probe subsets (``until`` with an unreachable target: the whole trajectory); ``best`` is
   the lowest Avg. Gap over the grid (step 0 excluded), the target is ``best + 1`` point;
2. each **coreset** (each ``--fractions`` x selector) with ``until={"avg_gap_to": oracle, "below": target}``: it
   stops at the first check within 1 point of the full set's best.

Time-to-target = features + selection + unlearning up to that check (probe time excluded), in CPU seconds of
this single-threaded process and in wall seconds, the cheapest over the grid (``table.py``). Features
(embeddings; CRAIG's projected per-sample gradients, per seed) are computed once, cached beside the models and
their measured cost is charged to every run that uses them. SSD (one shot, no steps) is scored once after its
step; its training-data importance ``I_D`` does not depend on the forget set, so it is computed once per model
(``full_importance=``) and its cost charged to every SSD run alike. Finetune never reads the forget set: it runs
on the full set and on a random coreset only, as the control. Results go to ``--out`` after every run (a
rerun skips what is there).
"""

from __future__ import annotations

import argparse
import contextlib
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
from erasus.strategies.until import StoppingRule

HERE = Path(__file__).resolve().parent
CACHE = Path(os.environ.get("ERASUS_V3_CACHE") or HERE.parent / ".cache" / "v3")  # --cache-dir overrides
BASE_LR = {"gradient_ascent": 2e-3, "grad_diff": 5e-3, "scrub": 5e-3, "salun": 1e-2, "finetune": 2e-2}
#: the v3 grid (3 values each, the same for the full set and every coreset size): learning rates, SSD's alpha.
#: GA / GradDiff sit 3-30x below the grid that diverged within 60 steps on the 5-epoch model (every full-set run
#: went to NaN / -inf); SalUn / finetune follow their papers' ranges, SCRUB brackets its default 5e-4 upwards
#: (a 60-step cap leaves it few max-steps); SSD's alpha must stay below n / n_f = 10 for a class of 6,000 images
#: to select anything (its lambda is the paper's 1).
GRID = {"gradient_ascent": [3e-5, 6e-5, 1.2e-4], "grad_diff": [6e-5, 1.2e-4, 2.5e-4],
        "salun": [2.5e-3, 5e-3, 1e-2], "scrub": [1e-3, 3e-3, 1e-2], "finetune": [1e-2, 2e-2, 4e-2],
        "ssd": [5.0, 7.0, 9.0]}
#: finetune never reads the forget set, so a coreset cannot change it: it runs as the control (full + random)
FORGET_FREE = {"finetune"}


def _grid(args: argparse.Namespace, strategy: str) -> list[float]:
    if args.lr_scales and strategy in BASE_LR:
        return [BASE_LR[strategy] * s for s in args.lr_scales]
    return GRID[strategy]


def _plan(args: argparse.Namespace) -> list[tuple[str, str, float, float]]:
    """(strategy, selector, fraction, lr-or-alpha) in run order: per strategy the full set first (its best sets
    the coresets' target), then each fraction x selector."""
    plan = []
    for strategy in args.strategies:
        plan += [(strategy, "full", 1.0, q) for q in _grid(args, strategy)]
        for fraction in args.fractions:
            for selector in (["random"] if strategy in FORGET_FREE else args.selectors):
                plan += [(strategy, selector, fraction, q) for q in _grid(args, strategy)]
    return plan


@contextlib.contextmanager
def _locked(path: Path):
    """An exclusive lock beside ``path``: concurrent seed processes compute a cached artifact once."""
    import fcntl

    with open(path.with_suffix(path.suffix + ".lock"), "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


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
        m = json.loads(meta.read_text())
        return model.eval(), float(m["train_s"]), float(m.get("train_cpu_s", float("nan")))
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
    return model.eval(), seconds, cpu


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
    ap.add_argument("--strategies", nargs="+", default=list(GRID))
    ap.add_argument("--selectors", nargs="+", default=["random", "kcenter"])
    ap.add_argument("--fractions", type=float, nargs="+", default=[0.1])
    ap.add_argument("--lr-scales", type=float, nargs="+",
                    help="x BASE_LR instead of the v3 GRID (the earlier runs' grids)")
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
        original, train_s, train_cpu_s = _trained(f"original_{tag}", TensorDataset(xtr, ytr), seed=args.model_seed, **recipe)
        log(f"original: test acc {_accuracy(original, xte, yte):.4f} ({train_s:.0f}s)")
    forget_tag = f"c{args.forget_class}" if args.scenario == "class" else f"r{args.forget_fraction:g}"
    if args.train_only == "original":
        return
    oracle, retrain_s, retrain_cpu_s = _trained(f"oracle_{forget_tag}_{tag}", retain, seed=args.model_seed, **recipe)
    log(f"oracle: test acc {_accuracy(oracle, xte, yte):.4f}, forget acc {_accuracy(oracle, *forget.tensors):.4f} "
        f"({retrain_s:.0f}s)")
    if args.train_only:
        return
    ssd_cache: dict = {}
    selector_options = {"memorization": {"proxy": "heldout_retrain", "heldout_data": heldout,
                                         "finetune_epochs": 5, "finetune_lr": 0.01, "keep": "stratified"}}
    plan = _plan(args)
    log(f"plan: {len(plan)} runs per seed x {len(args.seeds)} seeds = {len(plan) * len(args.seeds)} runs "
        f"({sum(1 for p in plan if p[1] == 'full')} full-set, {sum(1 for p in plan if p[1] != 'full')} coreset)")
    for seed in args.seeds:
        rng = np.random.default_rng(seed)

        def probe(ds: TensorDataset) -> TensorDataset:
            idx = np.sort(rng.choice(len(ds), size=min(args.probe, len(ds)), replace=False))
            return TensorDataset(*(t[idx] for t in ds.tensors))

        probes = {"data": probe(forget), "retain": probe(retain), "test": probe(TensorDataset(xte, yte))}
        gap_rule = StoppingRule({"avg_gap_to": oracle, "below": -1.0, **probes}, task=None, forget=None, retain=None)
        results["seeds"][str(seed)] = {
            "train_s": train_s, "retrain_s": retrain_s, "train_cpu_s": train_cpu_s, "retrain_cpu_s": retrain_cpu_s,
            "original_test_acc": _accuracy(original, xte, yte), "oracle_test_acc": _accuracy(oracle, xte, yte),
            "original_forget_acc": _accuracy(original, *forget.tensors),
            "oracle_forget_acc": _accuracy(oracle, *forget.tensors)}
        save()
        log(f"seed {seed}: {results['seeds'][str(seed)]}")

        def features_for(selector: str) -> tuple[np.ndarray | None, float, float]:
            """Selection features (computed once per model / seed, cached on disk) with their CPU and wall s."""
            sel = erasus.get_selector(selector)
            if isinstance(sel, ContextSelector) or not sel.needs_features:
                return None, 0.0, 0.0  # scores from the model: charged in the unlearner's selection time
            kind = sel.default_features
            # embeddings are deterministic given the model; projected gradients also depend on the seed
            path = CACHE / f"features_{tag}_{forget_tag}_{kind}" f"{f'_s{seed}' if kind == 'gradients' else ''}.npz"
            with _locked(path):
                if not path.exists():
                    t0, c0 = time.perf_counter(), time.process_time()
                    feats = np.asarray(features_from_model(original, forget, kind=kind, seed=seed,
                                                           **({"proj_dim": 256} if kind == "gradients" else {})))
                    cpu, wall = time.process_time() - c0, time.perf_counter() - t0
                    np.savez(path.with_suffix(".tmp.npz"), feats=feats, cpu_s=cpu, wall_s=wall, load=_uptime())
                    path.with_suffix(".tmp.npz").replace(path)
                    log(f"features {kind}: {cpu:.1f} CPU s, {wall:.1f} s wall (LOADED)")
                z = np.load(path)
                return z["feats"], float(z["cpu_s"]), float(z["wall_s"])

        def full_importance() -> tuple[list[torch.Tensor], float, float]:
            """SSD's I_D on the whole training set, once per model (cached on disk), with its CPU and wall s."""
            if "id" in ssd_cache:
                return ssd_cache["id"]
            path = CACHE / f"ssd_importance_{tag}_{forget_tag}.pt"
            with _locked(path):
                if not path.exists():
                    from erasus.strategies.ssd import importance
                    t0, c0 = time.perf_counter(), time.process_time()
                    loader = torch.utils.data.DataLoader(TensorDataset(xtr, ytr), batch_size=64, shuffle=False)
                    imp = importance(original, ((b, None) for b in loader),
                                     lambda m, b, w: torch.nn.functional.cross_entropy(m(b[0]), b[1]),
                                     batch_size=lambda b: len(b[1]))
                    cpu, wall = time.process_time() - c0, time.perf_counter() - t0
                    torch.save({"imp": imp, "cpu_s": cpu, "wall_s": wall, "load": _uptime()},
                               path.with_suffix(".tmp"))
                    path.with_suffix(".tmp").replace(path)
                    log(f"SSD I_D on all {len(ytr)} training images: {cpu:.1f} CPU s, {wall:.1f} s wall (LOADED)")
                z = torch.load(path, weights_only=True)
            ssd_cache["id"] = (z["imp"], float(z["cpu_s"]), float(z["wall_s"]))
            return ssd_cache["id"]

        targets: dict[str, float] = {}
        for strategy, selector, fraction, param in plan:
            key = f"{seed}|{strategy}|{selector}|{fraction:g}|{param:g}"
            full_keys = [f"{seed}|{strategy}|full|1|{q:g}" for q in _grid(args, strategy)]
            if selector != "full" and strategy not in targets:
                # the full set's best over its grid, step 0 excluded: the coresets' target is best + 1 point
                targets[strategy] = min(c["value"] for k in full_keys for c in results["runs"][k]["checks"][1:]) + 1
            if key in results["runs"]:
                continue
            target = targets.get(strategy, -1.0)  # full set: an unreachable target records the whole trajectory
            feats, feat_cpu, feat_wall = features_for(selector) if selector != "full" else (None, 0.0, 0.0)
            opts = {"selector_options": selector_options.get(selector)} if selector in selector_options else {}
            diverged = None
            if strategy in ("ssd",):
                imp, id_cpu, id_wall = full_importance()
                un = erasus.ErasusUnlearner(original, strategy=strategy, selector=selector, seed=seed, alpha=param,
                                            lam=1.0, batch_size=64, **opts)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)
                    model = un.fit(forget, retain, prune_ratio=fraction, features=feats, progress=False,
                                   full_importance=imp)
                t = un.timings_
                # one "check" after the one-shot step; I_D's cost is charged to every SSD run alike
                checks = [{"step": 0, "elapsed_s": 0.0, "cpu_s": 0.0, "value": gap_rule.value(original),
                           "met": False},
                          {"step": 1, "elapsed_s": t["unlearning_s"] + id_wall,
                           "cpu_s": t["unlearning_cpu_s"] + id_cpu, "value": gap_rule.value(model), "met": False}]
                checks[1]["met"] = checks[1]["value"] < target
                extra = {"dampened": un.strategy.info_.get("dampened"), "importance_cpu_s": id_cpu,
                         "importance_s": id_wall}
            else:
                un = erasus.ErasusUnlearner(original, strategy=strategy, selector=selector, seed=seed, lr=param,
                                            batch_size=64, **opts)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", TargetNotReachedWarning)
                    try:
                        un.fit(forget, retain, prune_ratio=fraction, features=feats, steps=args.cap,
                               progress=False, until={"avg_gap_to": oracle, "below": target,
                                                      "every": args.every, **probes})
                    except NonFiniteError as exc:  # the checks before the NaN are kept by the strategy
                        diverged = str(exc)
                checks = list(getattr(getattr(un.strategy, "history_", None), "checks", None) or [])
                t, extra = dict(un.timings_), {}  # a diverged run has no timings: it is never a time-to-target
            t = dict(t) | {"features_s": feat_wall if selector != "full" else 0.0,
                           "features_cpu_s": feat_cpu if selector != "full" else 0.0}
            results["runs"][key] = {"param": param, "checks": checks, "target": target, "timings": t,
                                    "reached": bool(checks and checks[-1]["met"]), "diverged": diverged,
                                    "load": _uptime(), **extra}
            save()
            last = checks[-1] if checks else {"step": -1, "cpu_s": float("nan"), "value": float("nan")}
            best = min([c["value"] for c in checks[1:]] or [float("nan")])
            log(f"{key}: best {best:.2f} (target {target:.2f}), last check step {last['step']} "
                f"{last['cpu_s']:.1f} CPU s" + (f" (diverged: {diverged})" if diverged else ""))


if __name__ == "__main__":
    main()
