"""The measured erasure run: erase one Fashion-MNIST class from the small text-to-image model trained by
``train.py`` with erasus' diffusion strategies, and compare with the original and the oracle (retrained without it).

    OMP_NUM_THREADS=1 python benches/diffusion/run.py                 # every config not yet in results/
    OMP_NUM_THREADS=1 python benches/diffusion/run.py --worker 0/2    # configs 0, 2, 4 ... (run 1/2 beside it)
    python benches/diffusion/table.py                                 # RESULTS.md tables from results/*.json

Each config writes ``results/<name>.json`` (skipped when present, so a crash loses one config) and, for seed 0,
``grids/<name>.png`` (rows: trouser, dress, sneaker, bag prompts; 8 samples each).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import CACHE, CLASSES, FMNIST_NAMES, FORGET, TEMPLATES, fmnist, save_grid  # noqa: E402
from evaluate import (GUIDANCE, STEPS, evaluate, generate, load_classifier, load_wrapper,  # noqa: E402
                      real_retain_features)

import erasus  # noqa: E402

_TAG = "" if CACHE.name == ".cache" else CACHE.name.removeprefix(".cache")
RESULTS, GRIDS = HERE / f"results{_TAG}", HERE / f"grids{_TAG}"
POOL = 320  # forget images (real training images of the class, captioned) for the image-based methods
CORESET = 32  # 10% of POOL


def load() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def forget_prompts() -> list[str]:
    return [t.format(FMNIST_NAMES[FORGET]) for t in TEMPLATES]


def retain_prompts() -> list[str]:
    return [t.format(FMNIST_NAMES[c]) for c in CLASSES if c != FORGET for t in TEMPLATES]


def image_pairs(classes: tuple[int, ...], n: int, seed: int) -> list[tuple[torch.Tensor, str]]:
    """``n`` real training images of ``classes`` with a caption from a random template."""
    x, y = fmnist(classes, split="train", limit_per_class=-(-n // len(classes)), seed=seed)
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(x), size=n, replace=False))
    return [(x[i], TEMPLATES[int(rng.integers(len(TEMPLATES)))].format(FMNIST_NAMES[classes[int(y[i])]]))
            for i in pick]


def coreset(kind: str, model, pairs) -> tuple[list, torch.Tensor | None, dict]:
    """10% of the forget images: random, k-center on classifier embeddings, CRAIG on denoising-loss gradients.

    The selection depends only on the original model and the pool, so it is made once per kind and cached: every
    method's ``*_coreset_<kind>`` config erases with the same images (``select_s`` is the first, uncached time)."""
    path = CACHE / f"coreset_{kind}.json"
    if path.exists():
        st = json.loads(path.read_text())
    else:
        t0 = time.time()
        if kind == "random":
            sel = erasus.select(np.zeros((len(pairs), 1), np.float32), CORESET, method="random", seed=0)
        elif kind == "kcenter":
            clf, _ = load_classifier()
            with torch.no_grad():
                feats = clf.features(torch.stack([p[0] for p in pairs])).numpy().astype(np.float32)
            sel = erasus.select(feats, CORESET, method="kcenter", seed=0)
        elif kind == "craig":
            sel = erasus.get_selector("craig", seed=0).select(model=model, data=pairs, k=CORESET)
        else:
            raise ValueError(kind)
        st = {"indices": [int(i) for i in sel.indices],
              "weights": None if kind != "craig" else [float(w) for w in np.asarray(sel.weights)],
              "select_s": time.time() - t0, "load": load()}
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(st))
        os.replace(tmp, path)
    w = None if st["weights"] is None else torch.tensor(st["weights"], dtype=torch.float32)
    return [pairs[i] for i in st["indices"]], w, {"selector": kind, "k": len(st["indices"]),
                                                   "select_s": st["select_s"], "select_load": st["load"]}


def swap_class(prompt: str, name: str) -> str:
    """The same caption template with another class name (template-aligned anchors / guides)."""
    return prompt.replace(FMNIST_NAMES[FORGET], name)


def configs() -> list[tuple[str, dict]]:
    """Every config, in priority order (the cheap and the decisive ones first, so a cut-short run keeps them)."""
    fp, rp = forget_prompts(), retain_prompts()
    retained = [c for c in CLASSES if c != FORGET]
    # Concept Ablation's anchor and UCE's class guide: the first retained class, template by template (the official
    # CA captions name the anchor in the target's caption); SalUn's remap: the next class, as the official code
    # relabels to the next class's description
    anchor = FMNIST_NAMES[retained[0]]
    remap = TEMPLATES[0].format(FMNIST_NAMES[CLASSES[(CLASSES.index(FORGET) + 1) % len(CLASSES)]])
    esd = {"steps": 60, "lr": 2e-4, "num_inference_steps": STEPS, "batch_size": 2}
    ca = {"anchor": "aligned", "steps": 60, "lr": 2e-4, "anchor_steps": STEPS, "anchor_images": 8}
    salun = {"remap": remap, "steps": 40, "lr": 1e-4, "batch_size": 8, "generation_steps": STEPS}
    ga = {"steps": 40, "lr": 1e-3, "batch_size": 8}
    uce_best = {"strategy": "uce", "token_span": "to_end", "guide": "aligned", "retain": rp}
    img = {"forget": "images"}
    out = [
        ("original", {}), ("oracle", {}),
        ("uce", {"strategy": "uce", "forget": fp, "retain": rp}),
        ("uce_to_end", {"strategy": "uce", "token_span": "to_end", "forget": fp, "retain": rp}),
        ("uce_guide_class", {"strategy": "uce", "guide": "aligned", "forget": fp, "retain": rp}),
        ("uce_to_end_guide_class", {**uce_best, "forget": fp}),
        ("uce_to_end_guide_class_lamb0.1", {**uce_best, "forget": fp, "lamb": 0.1}),
        ("esd_x", {"strategy": "esd", "variant": "x", "forget": fp, **esd}),
        ("esd_x_lr1e-3", {"strategy": "esd", "variant": "x", "forget": fp, **esd, "lr": 1e-3}),
        ("esd_u", {"strategy": "esd", "variant": "u", "forget": fp, **esd}),
        ("concept_ablation", {"strategy": "concept_ablation", "forget": fp, **ca}),
        ("concept_ablation_lr1e-3", {"strategy": "concept_ablation", "forget": fp, **ca, "lr": 1e-3}),
        ("salun", {"strategy": "salun_diffusion", **img, "retain": "images", **salun}),
        ("salun_lr5e-5", {"strategy": "salun_diffusion", **img, "retain": "images", **salun, "lr": 5e-5}),
        ("ga_lr1e-3", {"strategy": "gradient_ascent", **img, **ga}),
        ("uce_to_end_guide_class_pool", {**uce_best, **img}),
    ]
    for kind in ("random", "kcenter", "craig"):
        out += [
            (f"uce_to_end_guide_class_coreset_{kind}", {**uce_best, **img, "coreset": kind}),
            (f"esd_x_coreset_{kind}", {"strategy": "esd", "variant": "x", **img, "coreset": kind, **esd}),
            (f"concept_ablation_coreset_{kind}", {"strategy": "concept_ablation", **img, "coreset": kind, **ca}),
            (f"salun_coreset_{kind}", {"strategy": "salun_diffusion", **img, "retain": "images", "coreset": kind,
                                       **salun}),
            (f"ga_lr1e-3_coreset_{kind}", {"strategy": "gradient_ascent", **img, "coreset": kind, **ga}),
        ]
    return out


def grid(images_by_seed: dict, name: str) -> None:
    """Seeds 0 and 1, one sample per caption template and seed (8 columns), one row per class in CLASSES order
    (the forget row shows the forget prompts' images)."""
    from evaluate import FORGET_PER_TEMPLATE, RETAIN_PER_TEMPLATE

    per_class = len(TEMPLATES) * RETAIN_PER_TEMPLATE
    rows, r = [], 0
    for c in CLASSES:
        for s in (0, 1):
            xf, xr = images_by_seed[s]
            if c == FORGET:
                rows.append(xf[::FORGET_PER_TEMPLATE])
            else:
                rows.append(xr[r * per_class: (r + 1) * per_class: RETAIN_PER_TEMPLATE])
        r += c != FORGET
    save_grid(torch.cat(rows), GRIDS / f"{name}.png", nrow=2 * len(TEMPLATES))


def run_config(name: str, cfg: dict, *, original, original_images, real) -> None:
    out_path = RESULTS / f"{name}.json"
    t0 = time.time()
    info: dict = {"name": name, "config": {k: v for k, v in cfg.items() if k not in ("forget", "retain")},
                  "load_before": load()}
    if name == "original":
        model = original
    elif name == "oracle":
        model = load_wrapper(CACHE / "oracle")
    else:
        kw = {k: v for k, v in cfg.items() if k not in ("strategy", "forget", "retain", "coreset", "steps")}
        forget, retain, weights = cfg["forget"], cfg.get("retain"), None
        if forget == "images":
            forget = image_pairs((FORGET,), POOL, seed=0)
            if "coreset" in cfg:
                forget, weights, info["coreset"] = coreset(cfg["coreset"], original, forget)
        if retain == "images":
            retain = image_pairs(tuple(c for c in CLASSES if c != FORGET), POOL, seed=1)
        if "aligned" in (kw.get("anchor"), kw.get("guide")):
            anchor_name = FMNIST_NAMES[[c for c in CLASSES if c != FORGET][0]]
            kw["anchor" if "anchor" in kw else "guide"] = [swap_class(p if isinstance(p, str) else p[1], anchor_name)
                                                         for p in forget]
        strategy = erasus.get_strategy(cfg["strategy"], **kw)
        t1 = time.time()
        call = {"model": original, "forget_data": forget}
        if retain is not None:
            call["retain_data"] = retain
        if "steps" in cfg:
            call["steps"] = cfg["steps"]
        if weights is not None:
            call["weights"] = weights
        model = strategy.unlearn(**call)
        info["unlearn_s"] = time.time() - t1
        info["n_forget"] = len(forget)
    model.eval()
    res, images = evaluate(model, forget=FORGET, original_images=original_images, real_features=real)
    grid(images, name)
    info.update(res)
    info["total_s"] = time.time() - t0
    info["load_after"] = load()
    RESULTS.mkdir(exist_ok=True)
    tmp = out_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(info, indent=1))
    os.replace(tmp, out_path)
    print(f"{name}: erasure {res['erasure_accuracy']:.3f} retained {res['retained_accuracy']:.3f} "
          f"fid {res['fid']:.2f} kid {res['kid']:.4f} in {info['total_s']:.0f}s", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker", default="0/1", help="i/n: run configs i, i+n, ...")
    ap.add_argument("--only", nargs="*", default=None)
    a = ap.parse_args()
    torch.set_num_threads(1)
    i, n = (int(v) for v in a.worker.split("/"))
    todo = [(k, c) for j, (k, c) in enumerate(configs()) if j % n == i and (a.only is None or k in a.only)]
    original = load_wrapper(CACHE / "original")
    _, classes = load_classifier()
    real = real_retain_features(classes, FORGET)
    # the original's generations are the reference of the distance metric: computed once, cached
    ref_path = CACHE / "original_images.pt"
    while i != 0 and not ref_path.exists():  # worker 0 makes it; the others wait rather than repeat the work
        time.sleep(10)
    if ref_path.exists():
        original_images = torch.load(ref_path, weights_only=False)
    else:
        from evaluate import SEEDS, prompt_sets

        fp, rp, _ = prompt_sets(classes, FORGET)
        with torch.no_grad():
            original_images = {s: (generate(original, fp, s), generate(original, rp, s)) for s in SEEDS}
        torch.save(original_images, ref_path)
    for name, cfg in todo:
        if (RESULTS / f"{name}.json").exists():
            print(name, "done already")
            continue
        print(name, "...", load(), flush=True)
        try:
            run_config(name, cfg, original=original, original_images=original_images, real=real)
        except Exception as exc:  # record the failure and go on: one broken method must not cost the others
            RESULTS.mkdir(exist_ok=True)
            (RESULTS / f"{name}.error.txt").write_text(f"{type(exc).__name__}: {exc}\n")
            print(name, "FAILED", type(exc).__name__, exc, flush=True)
    print("sampling:", STEPS, "DDIM steps, guidance", GUIDANCE)


if __name__ == "__main__":
    main()
