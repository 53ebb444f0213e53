"""Class forgetting on Moving Fashion-MNIST clips with a small VideoMAE: full forget set against 10% coresets.

    python benches/video/run.py train            # original + oracle per seed (cached in benches/video/.cache/)
    python benches/video/run.py sweep            # lr grid per strategy on the validation split (seed 0)
    python benches/video/run.py run --seeds 0 --out benches/video/results_seed0.jsonl   # (one process per seed)
    python benches/video/run.py table            # RESULTS table from every results*.jsonl (--table-sweep: sweep)

Every stage is resumable: trained models are saved with ``save_pretrained`` under ``.cache/`` and every finished
row is appended to a JSONL file that a re-run skips. Protocol in ``RESULTS.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache"

#: 8 frames of 32x32 grey, tubelets 2x8x8 -> 64 tokens; 76k parameters
MODEL = {"image_size": 32, "patch_size": 8, "num_channels": 1, "num_frames": 8, "tubelet_size": 2, "hidden_size": 64,
         "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 128, "num_labels": 10,
         "use_mean_pooling": True}
N_TRAIN, N_TEST = 3000, 2000  # the test draw is split in half: validation (lr sweep) and test (reported)
RETAIN_EVAL = 1000
FORGET_CLASS = 3  # "dress", the class benches/unlearning forgets
TRAIN = {"epochs": 16, "lr": 2e-3, "weight_decay": 0.05, "batch_size": 64}
STRATEGIES = ("gradient_ascent", "grad_diff", "scrub", "salun", "neg_grad_plus")
FRACTION = 0.1
#: learning rates swept on the validation split of seed 0 (full forget set); the lowest Avg. Gap is used
LR_GRID = {"gradient_ascent": (1e-5, 3e-5, 1e-4, 3e-4, 1e-3), "grad_diff": (3e-5, 1e-4, 3e-4),
           "scrub": (1e-4, 3e-4, 1e-3), "salun": (3e-4, 1e-3, 3e-3), "neg_grad_plus": (3e-4, 1e-3, 3e-3)}
SELECTORS = ("random", "kcenter", "craig")
COMMON = {"optimizer": "adam", "default_epochs": 3}
GAP_KEYS = ("forget_acc", "retain_acc", "test_forget_acc", "test_retain_acc", "mia")


class Clips(Dataset):
    """``{"pixel_values": (frames, 1, 32, 32), "labels": ()}`` items, the VideoMAE layout erasus takes."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"pixel_values": self.x[i], "labels": self.y[i]}


def load() -> float:
    return os.getloadavg()[0]


def splits(seed: int) -> dict[str, Clips]:
    from erasus.experiments.moving_fashion_mnist import load_moving_fashion_mnist

    xtr, ytr, xte, yte = load_moving_fashion_mnist(n_train=N_TRAIN, n_test=N_TEST, seed=seed)
    half = np.random.default_rng(seed).permutation(len(yte))
    val, test = half[: len(yte) // 2], half[len(yte) // 2:]
    f = (ytr == FORGET_CLASS).numpy()
    out = {"forget": Clips(xtr[f], ytr[f]), "retain": Clips(xtr[~f], ytr[~f]), "train": Clips(xtr, ytr)}
    # retain accuracy and the MIA's member sample are read on a fixed 1,000 of the retain set: all 2,700
    # clips doubled each row's evaluation time on the loaded machine (the sweep's rows used all of them)
    keep = np.sort(np.random.default_rng(100 + seed).permutation(int((~f).sum()))[:RETAIN_EVAL])
    out["retain_eval"] = Clips(xtr[~f][keep], ytr[~f][keep])
    for name, idx in (("val", val), ("test", test)):
        x, y = xte[idx], yte[idx]
        m = (y == FORGET_CLASS).numpy()
        out[name] = Clips(x, y)
        out[f"{name}_forget"], out[f"{name}_retain"] = Clips(x[m], y[m]), Clips(x[~m], y[~m])
    return out


def fresh(seed: int) -> torch.nn.Module:
    from transformers import VideoMAEConfig, VideoMAEForVideoClassification

    torch.manual_seed(seed)
    return VideoMAEForVideoClassification(VideoMAEConfig(**MODEL, attn_implementation="eager"))


def train(model: torch.nn.Module, data: Clips, *, seed: int) -> torch.nn.Module:
    """AdamW with one warm-up epoch and a cosine decay, the usual recipe for a ViT trained from scratch."""
    from tqdm.auto import tqdm

    n, bs = len(data), TRAIN["batch_size"]
    per_epoch = math.ceil(n / bs)
    total = TRAIN["epochs"] * per_epoch
    opt = torch.optim.AdamW(model.parameters(), lr=TRAIN["lr"], weight_decay=TRAIN["weight_decay"])
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / per_epoch) * 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
    g = torch.Generator().manual_seed(seed)
    model.train()
    for _ in tqdm(range(TRAIN["epochs"]), desc="train", leave=False):
        perm = torch.randperm(n, generator=g)
        for i in range(0, n, bs):
            idx = perm[i:i + bs]
            loss = model(pixel_values=data.x[idx], labels=data.y[idx]).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return model.eval()


def trained(seed: int, kind: str, data: dict[str, Clips]) -> tuple[Any, float]:
    """The cached ``original`` (all training clips) or ``oracle`` (without the forget class) of a seed, as a
    :class:`erasus.models.VideoMAEWrapper` loaded from its folder (the path a user would give)."""
    from erasus.models import VideoMAEWrapper

    folder = CACHE / f"seed{seed}_{kind}"
    meta = folder / "erasus_train.json"
    if not meta.exists():
        t0, l0 = time.perf_counter(), load()
        model = train(fresh(seed), data["train" if kind == "original" else "retain"], seed=seed)
        secs = time.perf_counter() - t0
        model.save_pretrained(folder)
        meta.write_text(json.dumps({"train_s": secs, "load_start": l0, "load_end": load()}))
        print(f"seed {seed} {kind}: trained in {secs:.0f}s (load {l0:.1f} -> {load():.1f})", flush=True)
    return VideoMAEWrapper(folder), json.loads(meta.read_text())["train_s"]


def scores(model: Any, data: dict[str, Clips], *, prefix: str) -> dict[str, float]:
    """Top-1 / top-5 on the train forget / retain clips and the held-out forget-class / other-class clips, and
    MIA-Efficacy of the train forget clips (retain = members, ``prefix`` split = non-members)."""
    import erasus
    from erasus.metrics import output_cache

    acc = erasus.get_metric("video_accuracy")
    retain = "retain" if prefix == "val" else "retain_eval"
    out: dict[str, float] = {}
    with output_cache():  # each split is run through the model once for both metrics
        for key, split in (("forget", "forget"), ("retain", retain), ("test_forget", f"{prefix}_forget"),
                           ("test_retain", f"{prefix}_retain")):
            r = acc.compute(model, test=data[split])
            out[f"{key}_acc"], out[f"{key}_top5"] = r["test_accuracy"], r["test_top5_accuracy"]
        out["mia"] = erasus.get_metric("mia_efficacy").compute(model, data["forget"], data[retain],
                                                               data[prefix])["mia_efficacy"]
    return out


def gap(s: dict[str, float], ref: dict[str, float]) -> float:
    return float(np.mean([abs(s[k] - ref[k]) for k in GAP_KEYS])) * 100


def done_keys(path: Path) -> set[tuple[Any, ...]]:
    if not path.exists():
        return set()
    return {tuple(r["key"]) for r in map(json.loads, path.read_text().splitlines()) if r}


def append(path: Path, row: dict[str, Any]) -> None:
    with path.open("a") as fh:
        fh.write(json.dumps(row) + "\n")


def unlearn_row(original: Any, data: dict[str, Clips], *, strategy: str, lr: float, selector: str, seed: int,
                features: dict[str, tuple[Any, float]], prefix: str) -> dict[str, Any]:
    import erasus
    from erasus.errors import NonFiniteError

    un = erasus.ErasusUnlearner(original, strategy=strategy, selector=selector, seed=seed, lr=lr, **COMMON)
    sel = erasus.get_selector(selector)
    feats, feat_s = (None, 0.0)
    if selector != "full" and sel.needs_features:
        feats, feat_s = features[sel.default_features]
    l0 = load()
    try:
        un.fit(data["forget"], data["retain"], prune_ratio=1.0 if selector == "full" else FRACTION, features=feats,
               progress=False)
    except NonFiniteError as exc:
        return {"diverged": str(exc)}
    s = scores(un.model_, data, prefix=prefix)
    return {**s, "time_s": un.timings_["total_s"] + feat_s, "feature_s": feat_s, "load": (l0 + load()) / 2,
            "k": len(un.selection_.indices) if un.selection_ is not None else len(data["forget"])}


def selection_features(original: Any, data: dict[str, Clips], seed: int) -> dict[str, tuple[Any, float]]:
    from erasus.selectors.base import features_from_model

    out = {}
    for kind, opts in (("embeddings", {}), ("gradients", {"proj_dim": 256})):
        t0 = time.perf_counter()
        out[kind] = (features_from_model(original, data["forget"], kind=kind, seed=seed, progress=False, **opts),
                     time.perf_counter() - t0)
    return out


def stage_train(seeds: list[int]) -> None:
    for seed in seeds:
        data = splits(seed)
        for kind in ("original", "oracle"):
            trained(seed, kind, data)


def reference_rows(seed: int, data: dict[str, Clips], prefix: str, out: Path) -> dict[str, float]:
    keys = done_keys(out)
    original, train_s = trained(seed, "original", data)
    oracle, retrain_s = trained(seed, "oracle", data)
    ref = scores(oracle, data, prefix=prefix)
    for name, model, secs in (("oracle", oracle, retrain_s), ("original", original, 0.0)):
        key = [seed, name, "-", 0.0]
        if tuple(key) not in keys:
            s = ref if name == "oracle" else scores(model, data, prefix=prefix)
            append(out, {"key": key, "seed": seed, "strategy": name, "selector": "-", "lr": None, **s,
                         "time_s": secs, "avg_gap": gap(s, ref), "load": load()})
    return ref


def stage_sweep(out: Path, strategies: tuple[str, ...]) -> None:
    seed = 0
    data = splits(seed)
    ref = reference_rows(seed, data, "val", out)
    original, _ = trained(seed, "original", data)
    keys = done_keys(out)
    for strategy in strategies:
        for lr in LR_GRID[strategy]:
            key = [seed, strategy, "full", lr]
            if tuple(key) in keys:
                continue
            row = unlearn_row(original, data, strategy=strategy, lr=lr, selector="full", seed=seed, features={},
                              prefix="val")
            if "diverged" not in row:
                row["avg_gap"] = gap(row, ref)
            append(out, {"key": key, "seed": seed, "strategy": strategy, "selector": "full", "lr": lr, **row})
            print(strategy, lr, {k: round(v, 3) for k, v in row.items() if isinstance(v, float)}, flush=True)


def chosen_lrs(sweep: Path) -> dict[str, float]:
    rows = read_rows(sweep)
    best: dict[str, tuple[float, float]] = {}
    for r in rows:
        if r["selector"] == "full" and r["strategy"] in STRATEGIES and r.get("avg_gap") is not None:
            if r["strategy"] not in best or r["avg_gap"] < best[r["strategy"]][0]:
                best[r["strategy"]] = (r["avg_gap"], r["lr"])
    return {s: best[s][1] for s in STRATEGIES if s in best}


def stage_run(seeds: list[int], out: Path, sweep: Path, strategies: tuple[str, ...]) -> None:
    lrs = {s: lr for s, lr in chosen_lrs(sweep).items() if s in strategies}
    print("lr chosen on validation:", lrs, flush=True)
    for seed in seeds:
        data = splits(seed)
        ref = reference_rows(seed, data, "test", out)
        original, _ = trained(seed, "original", data)
        keys = done_keys(out)
        features = selection_features(original, data, seed)
        for strategy, lr in lrs.items():
            for selector in ("full", *SELECTORS):
                key = [seed, strategy, selector, FRACTION if selector != "full" else 1.0]
                if tuple(key) in keys:
                    continue
                row = unlearn_row(original, data, strategy=strategy, lr=lr, selector=selector, seed=seed,
                                  features=features, prefix="test")
                if "diverged" not in row:
                    row["avg_gap"] = gap(row, ref)
                append(out, {"key": key, "seed": seed, "strategy": strategy, "selector": selector, "lr": lr, **row})
                print(seed, strategy, selector, {k: round(v, 3) for k, v in row.items() if isinstance(v, float)},
                      flush=True)


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of a results file, one per key (processes sharing a file may both have written a reference row)."""
    rows = {tuple(r["key"]): r for r in map(json.loads, path.read_text().splitlines()) if r}
    return list(rows.values())


def stage_table(paths: list[Path], *, by_lr: bool = False) -> None:
    # the reference rows of a seed are in every file a process of that seed wrote; count them once
    rows = list({tuple(r["key"]): r for path in paths for r in read_rows(path)}.values())
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        selector = f"{r['selector']} lr {r['lr']:g}" if by_lr and r["lr"] is not None else r["selector"]
        groups.setdefault((r["strategy"], selector), []).append(r)
    cols = ("forget_acc", "test_forget_acc", "retain_acc", "test_retain_acc", "test_retain_top5", "mia", "avg_gap",
            "time_s")
    print("| strategy | coreset | seeds | " + " | ".join(cols) + " |")
    print("|---" * (3 + len(cols)) + "|")
    order = {s: i for i, s in enumerate(("oracle", "original", *STRATEGIES))}
    for (strategy, selector), rs in sorted(groups.items(), key=lambda kv: (order.get(kv[0][0], 99), kv[0][1] != "full",
                                                                             kv[0][1])):
        ok = [r for r in rs if "diverged" not in r]
        cells = []
        for c in cols:
            v = np.array([r[c] for r in ok], dtype=float)
            scale = 1 if c in ("avg_gap", "time_s") else 100
            cells.append(f"{v.mean() * scale:.1f} ± {v.std() * scale:.1f}" if len(v) else "-")
        div = f" ({len(rs) - len(ok)} diverged)" if len(ok) < len(rs) else ""
        name = selector if selector.startswith(("full", "-")) else f"{selector} 10%"
        print(f"| {strategy} | {name} | {len(ok)}{div} | " + " | ".join(cells) + " |")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("stage", choices=("train", "sweep", "run", "table"))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--out", type=Path, default=HERE / "results.jsonl")
    p.add_argument("--sweep", type=Path, default=HERE / "sweep.jsonl")
    p.add_argument("--table-sweep", action="store_true", help="table: the sweep's rows instead of the results")
    p.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES,
                   help="sweep / run only these (to split the work over processes)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    CACHE.mkdir(exist_ok=True)
    if args.stage == "train":
        stage_train(args.seeds)
    elif args.stage == "sweep":
        stage_sweep(args.sweep, tuple(args.strategies))
    elif args.stage == "run":
        stage_run(args.seeds, args.out, args.sweep, tuple(args.strategies))
    else:
        if args.table_sweep:
            stage_table([args.sweep], by_lr=True)
        else:
            stage_table(sorted(HERE.glob("results*.jsonl")))


if __name__ == "__main__":
    main()
