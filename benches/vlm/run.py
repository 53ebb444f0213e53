"""The measured vision-language run: forget one Fashion-MNIST class from two contrastively trained dual
encoders, with erasus' public API, against an oracle retrained without the class.

    python benches/vlm/models.py                              # once: start models + oracles (cached)
    python benches/vlm/run.py --phase sweep --families minilm --out benches/vlm/sweep_minilm.json
    python benches/vlm/run.py --phase grid --families minilm --sweep benches/vlm/sweep_minilm.json \
        --out benches/vlm/results_minilm.json            # and the same two with clip in place of minilm
    python benches/vlm/table.py benches/vlm/sweep_*.json benches/vlm/results_*.json   # the tables of RESULTS.md

Models (``common.py``, ``models.py``): a CNN image tower + frozen MiniLM text encoder with a trainable
projection, and an HF ``CLIPModel`` from a small ``CLIPConfig``; both trained on 6,000 Fashion-MNIST
images with templated captions. The forget set is every training pair of the forget class
(``FORGET_CLASS``: ``dress`` for MiniLM; ``sandal`` for the small CLIP, which never learned dresses), the
retain set 2,000 pairs of the other classes. Evaluation on Fashion-MNIST test images: 1,000 for choosing
learning rates (``val``), 1,000 others for the reported numbers (``test``).

* ``sweep``: every method on the full forget set, seed 0, over a learning-rate grid, scored on ``val``.
* ``grid``: every method at the learning rate the sweep chose (smallest ``(|d forget| + |d retain|) / 2``
  against the oracle on ``val``), on the full forget set and on 10% coresets (``random``, ``kcenter``,
  ``herding``, ``craig`` on the start model's joint image+text embeddings), 3 seeds, scored on ``test``.

Everything goes through ``erasus.ErasusUnlearner`` (strategy + selector by name) and ``erasus.get_metric``
(``zero_shot_accuracy``, ``retrieval``, ``cascade``); one torch thread.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
import models as start_models  # noqa: E402

import erasus  # noqa: E402

FORGET_CLASS = common.FORGET_CLASS
STEPS = 40
BATCH = 64
N_RETAIN = 2000
N_RETRIEVAL = 500
RATIOS = {"md_v0.1": 0.1, "md_v1": 1.0, "md_v10": 10.0}  # vision_lr / text_lr
ONE_TOWER = {"md_text_only": (0.0, 1.0), "md_vision_only": (1.0, 0.0)}  # (vision, text) multipliers
LR_GRID = {
    "gradient_ascent": (3e-5, 1e-4, 3e-4, 1e-3),
    "md": (1e-4, 3e-4, 1e-3),
    "contrastive_unlearning": (1e-4, 3e-4, 1e-3),
    "clip_erase": (1e-4, 3e-4, 1e-3),
}
SELECTORS = ("full", "random", "kcenter", "herding", "craig")


class PairDataset(torch.utils.data.Dataset):
    """Per-sample dicts ``{"pixel_values": (1, 28, 28), "input_ids": (T,), "attention_mask": (T,), "labels": ()}``."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, tokenizer: Any, *, seed: int) -> None:
        enc = tokenizer(common.captions_of(y, common.caption_ids(y, seed=seed)))
        self.x, self.y, self.ids, self.mask = x, y, enc["input_ids"], enc["attention_mask"]

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"pixel_values": self.x[i], "input_ids": self.ids[i], "attention_mask": self.mask[i],
                "labels": self.y[i]}


def method_options(method: str, lr: float) -> tuple[str, dict[str, Any]]:
    """``(registered strategy name, options)`` of a method of the comparison at base learning rate ``lr``."""
    common_opts = {"batch_size": BATCH}
    if method.startswith("md_"):
        if method in ONE_TOWER:
            v, t = ONE_TOWER[method]
            return "modality_decoupling", {**common_opts, "vision_lr": v * lr, "text_lr": t * lr}
        r = RATIOS[method]
        return "modality_decoupling", {**common_opts, "vision_lr": lr * r / max(r, 1.0), "text_lr": lr / max(r, 1.0)}
    if method == "gradient_ascent":
        return method, {**common_opts, "optimizer": "adam"}
    return method, common_opts


def lr_grid(method: str) -> tuple[float, ...]:
    return LR_GRID["md" if method.startswith("md_") else method]


class Context:
    """Data, models and metrics of one family."""

    def __init__(self, family: str, *, n_train: int, n_test: int, train_seed: int = 0) -> None:
        self.family = family
        self.train_seed = train_seed
        self.forget_class = fc = FORGET_CLASS[family]
        self.tokenizer, factory = start_models.tokenizer_and_factory(family)
        data = common.load_data(n_train=n_train, n_test=n_test)
        kw = dict(data=data, forget_class=fc, n_train=n_train, n_test=n_test, seed=train_seed, factory=factory,
                  tokenizer=self.tokenizer)
        self.start, self.start_record = start_models.trained(family, "start", **kw)
        self.oracle, self.oracle_record = start_models.trained(family, "oracle", **kw)
        x, y = data["x_train"], data["y_train"]
        f = y == fc
        g = torch.Generator().manual_seed(1)
        keep = torch.nonzero(~f).squeeze(1)
        keep = keep[torch.randperm(len(keep), generator=g)[:N_RETAIN]].sort().values
        self.forget = PairDataset(x[f], y[f], self.tokenizer, seed=11)
        self.retain = PairDataset(x[keep], y[keep], self.tokenizer, seed=12)
        xt, yt = data["x_test"], data["y_test"]
        half = len(yt) // 2
        self.eval_sets = {"val": PairDataset(xt[:half], yt[:half], self.tokenizer, seed=13),
                          "test": PairDataset(xt[half:], yt[half:], self.tokenizer, seed=14)}
        self.retrieval_sets = {}
        for split, ds in self.eval_sets.items():
            rest = torch.nonzero(ds.y != fc).squeeze(1)[:N_RETRIEVAL]
            self.retrieval_sets[split] = torch.utils.data.Subset(ds, rest.tolist())
        self.zero_shot = erasus.get_metric("zero_shot_accuracy", class_prompts=common.class_prompts(),
                                           tokenizer=self.tokenizer, forget_classes=[fc])
        self.retrieval = erasus.get_metric("retrieval")
        self.cascade = erasus.get_metric("cascade")
        self.oracle_scores = {s: self.evaluate(self.oracle, s, cascade=False) for s in self.eval_sets}
        self.start_scores = {s: self.evaluate(self.start, s, cascade=False) for s in self.eval_sets}

    def evaluate(self, model: torch.nn.Module, split: str, *, cascade: bool = True) -> dict[str, float]:
        out = {k: v for k, v in self.zero_shot.compute(model, self.eval_sets[split]).items()
               if k.endswith(("_forget", "_retain"))}
        r = self.retrieval.compute(model, self.retrieval_sets[split])
        out.update({f"retain_{k}": v for k, v in r.items()
                    if k.endswith(("@1", "@5", "@10")) and not k.startswith("mean") or k == "pair_cosine"})
        if cascade:
            c = self.cascade.compute(model, self.retrieval_sets[split], original=self.start)
            out.update({k: v for k, v in c.items() if k.endswith("cosine_distance")})
        return out

    def features(self) -> np.ndarray:
        """Joint selection features of the forget pairs: [normalised image emb, normalised text emb] of the
        start model (what a user of the pipeline has before unlearning)."""
        from erasus.metrics.contrastive import collect_embeddings

        v, t, _ = collect_embeddings(self.start, self.forget)
        return torch.cat([v, t], dim=1).numpy().astype(np.float32)


def run_one(ctx: Context, method: str, lr: float, selector: str, seed: int, split: str) -> dict[str, Any]:
    name, opts = method_options(method, lr)
    if not method.startswith("md_"):
        opts["lr"] = lr
    t0 = time.perf_counter()
    unlearner = erasus.ErasusUnlearner(ctx.start, strategy=name, selector=selector, seed=seed, **opts)
    features = None if selector in ("full", "random") else ctx.features()
    t_feat = time.perf_counter() - t0
    row: dict[str, Any] = {"family": ctx.family, "method": method, "strategy": name, "lr": lr, "selector": selector,
                           "seed": seed, "train_seed": ctx.train_seed, "split": split, "options": {k: v for k, v in opts.items()}}
    try:
        model = unlearner.fit(ctx.forget, ctx.retain, prune_ratio=1.0 if selector == "full" else 0.1,
                              features=features, steps=STEPS, progress=False)
    except erasus.errors.NonFiniteError as exc:
        row.update(diverged=True, error=str(exc))
        return row
    row["time_s"] = time.perf_counter() - t0
    row["features_s"] = t_feat if features is not None else 0.0
    row["coreset_size"] = len(unlearner.selection_)
    row.update(ctx.evaluate(model, split))
    o = ctx.oracle_scores[split]
    row["d_forget"] = row["zero_shot_top1_forget"] - o["zero_shot_top1_forget"]
    row["d_retain"] = row["zero_shot_top1_retain"] - o["zero_shot_top1_retain"]
    row["gap"] = (abs(row["d_forget"]) + abs(row["d_retain"])) / 2
    return row


def machine() -> dict[str, Any]:
    return {"uptime": os.popen("uptime").read().strip(), "erasus": str(Path(erasus.__file__).parent), "cpus": os.cpu_count(), "python": platform.python_version(),
            "torch": torch.__version__, "threads": torch.get_num_threads()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--phase", choices=("sweep", "grid"), required=True)
    parser.add_argument("--families", default="minilm,clip")
    parser.add_argument("--methods", default="gradient_ascent,md_v0.1,md_v1,md_v10,md_text_only,md_vision_only,"
                                             "contrastive_unlearning,clip_erase")
    parser.add_argument("--selectors", default=",".join(SELECTORS))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--sweep", help="the sweep JSON whose chosen learning rates the grid uses")
    parser.add_argument("--out", required=True)
    parser.add_argument("--lrs", help="override the learning-rate grid of the sweep (comma-separated)")
    parser.add_argument("--n-train", type=int, default=6000)
    parser.add_argument("--n-test", type=int, default=2000)
    parser.add_argument("--train-seed", type=int, default=0,
                        help="training seed of the start model and the oracle (models.py --train-seed)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    doc = json.loads(out.read_text()) if out.exists() else {"rows": [], "reference": {}, "machine": []}
    done = {(r["family"], r["method"], r["lr"], r["selector"], r["seed"], r.get("train_seed", 0)) for r in doc["rows"]}
    chosen = json.loads(Path(args.sweep).read_text())["chosen"] if args.phase == "grid" else {}
    doc["machine"].append({"start": machine(), "argv": sys.argv[1:]})
    methods = args.methods.split(",")
    for family in args.families.split(","):
        ctx = Context(family, n_train=args.n_train, n_test=args.n_test, train_seed=args.train_seed)
        doc["reference"][family] = {"forget_class": common.CLASSES[ctx.forget_class], "oracle": ctx.oracle_scores, "start": ctx.start_scores,
                                    "oracle_train": ctx.oracle_record, "start_train": ctx.start_record,
                                    "n_forget": len(ctx.forget), "n_retain": len(ctx.retain)}
        print(f"{family}: start {ctx.start_scores['val']}\n{family}: oracle {ctx.oracle_scores['val']}", flush=True)
        for method in methods:
            if args.phase == "sweep":
                grid = tuple(map(float, args.lrs.split(","))) if args.lrs else lr_grid(method)
                jobs = [(lr, "full", 0, "val") for lr in grid]
            else:
                lr = chosen[family][method]
                sels = SELECTORS if method not in ONE_TOWER else ("full",)
                jobs = [(lr, s, seed, "test") for s in args.selectors.split(",") if s in sels
                        for seed in map(int, args.seeds.split(","))]
            for lr, selector, seed, split in jobs:
                if (family, method, lr, selector, seed, args.train_seed) in done:
                    continue
                row = run_one(ctx, method, lr, selector, seed, split)
                doc["rows"].append(row)
                out.write_text(json.dumps(doc, indent=1, default=float))
                print(f"  {family} {method} lr={lr:g} {selector} seed={seed}: "
                      + ("diverged" if row.get("diverged") else
                         f"forget {row['zero_shot_top1_forget']:.3f} retain {row['zero_shot_top1_retain']:.3f} "
                         f"gap {row['gap']:.3f} ({row['time_s']:.1f} s)"), flush=True)
        if args.phase == "sweep":
            doc.setdefault("chosen", {})[family] = {}
            for method in methods:
                rows = [r for r in doc["rows"] if r["family"] == family and r["method"] == method
                        and not r.get("diverged")]
                if rows:
                    doc["chosen"][family][method] = min(rows, key=lambda r: r["gap"])["lr"]
            out.write_text(json.dumps(doc, indent=1, default=float))
    doc["machine"].append({"end": machine()})
    out.write_text(json.dumps(doc, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
