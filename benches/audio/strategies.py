"""The other general strategies on the spoken-word bench, and speaker-embedding similarity on every model.

    OMP_NUM_THREADS=1 python benches/audio/strategies.py 0      # -> results_strategies.json (resumable)
    python benches/audio/strategies.py --table                  # the tables of RESULTS.md's "Other strategies"

Same models, scenarios, evaluation and budget as ``run.py`` (Adam, lr 3e-4, 30 steps, batch 16, full forget
set; NegGrad+ is re-run as the check that this run reproduces ``results.json``), for GA, GradDiff, NPO, SCRUB,
SalUn and random labels, all at NegGrad+'s settings, untuned. Every speaker-scenario row also scores
``get_metric("speaker_similarity")`` with the model's own encoder (mean-pooled last encoder state): the mean
cosine of the forgotten speaker's held-out clips / retained speakers' held-out clips / the unseen speakers' clips
to the centroid of the forgotten speaker's training clips, each embedded by the model being scored.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

import common
import erasus
from run import _eval, _mia, scenario_sets

RESULTS = Path(os.environ.get("ERASUS_AUDIO_STRATEGY_RESULTS", common.HERE / "results_strategies.json"))
BASE = dict(optimizer="adam", lr=3e-4, batch_size=16)
STEPS = 30
# strategy -> its own options beyond BASE (NegGrad+'s beta as in run.py; the others at their defaults)
STRATEGIES = {"neg_grad_plus": {"beta": 0.9}, "gradient_ascent": {}, "grad_diff": {}, "npo": {}, "scrub": {},
              "salun": {}, "random_label": {}}


def _speaker_similarity(model, items, sp):
    pick = lambda key: [items[int(i)] for i in sp[key]]  # noqa: E731
    out = erasus.get_metric("speaker_similarity", batch_size=64).compute(
        model, forget=pick("spk_forget_test"), retain=pick("spk_retain_test"), test=pick("unseen"),
        reference=pick("spk_forget"))
    return {"spk_sim_forget_test": out["forget_speaker_similarity"],
            "spk_sim_retain_test": out["retain_speaker_similarity"],
            "spk_sim_unseen": out["test_speaker_similarity"]}


def main(seeds):
    torch.set_num_threads(1)
    items, table = common.load_data()
    sp = common.splits(table)
    tok = common.processor().tokenizer
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}

    def save():
        RESULTS.write_text(json.dumps(results, indent=1, sort_keys=True))

    for seed in seeds:
        models = {name: common.train_model(items, [], seed=seed, name=name)[0]
                  for name in ("original", "oracle_speaker", "oracle_word")
                  if (common.CACHE / "models" / f"{name}_s{seed}.pt").exists()}
        if len(models) < 3:
            print(f"skip seed {seed}: train it first (train.py {seed})", flush=True)
            continue
        for which in ("speaker", "word"):
            forget, retain, sets, nonmembers = scenario_sets(sp, which)
            rng = np.random.default_rng(seed)
            nonmembers = rng.choice(nonmembers, size=min(len(nonmembers), len(forget)), replace=False)
            extra = (lambda m: _speaker_similarity(m, items, sp)) if which == "speaker" else (lambda m: {})
            for ref in ("original", f"oracle_{which}"):
                key = f"{which}/{ref}/s{seed}"
                if key not in results:
                    m = models[ref]
                    results[key] = {**_eval(m, items, sets, tok), "mia_auc": _mia(m, items, forget, nonmembers),
                                    **extra(m), "load": os.getloadavg()[0]}
                    save()
                    print(key, {k: round(v, 3) for k, v in results[key].items()}, flush=True)
            forget_items = [items[int(i)] for i in forget]
            retain_items = [items[int(i)] for i in retain]
            for strategy, opts in STRATEGIES.items():
                key = f"{which}/{strategy}/s{seed}"
                if key in results:
                    continue
                unl = erasus.ErasusUnlearner(models["original"], strategy=strategy, selector="full", seed=seed,
                                             **BASE, **opts)
                l0, t0 = os.getloadavg()[0], time.perf_counter()
                out = unl.fit(forget_items, retain_items, steps=STEPS, progress=False)
                secs = time.perf_counter() - t0
                results[key] = {**_eval(out, items, sets, tok), "mia_auc": _mia(out, items, forget, nonmembers),
                                **extra(out), "time_s": secs, "load": (l0 + os.getloadavg()[0]) / 2}
                save()
                print(key, {k: round(v, 3) for k, v in results[key].items()}, flush=True)


COLUMNS = {
    "speaker": [("forget_test_acc", "forgotten spk held-out acc"), ("unseen_acc", "unseen spk acc"),
                ("retain_test_acc", "retained spk acc"), ("forget_train_acc", "forget clips acc"),
                ("mia_auc", "MIA AUC"), ("spk_sim_forget_test", "spk-sim forgotten (held-out)"),
                ("spk_sim_unseen", "spk-sim unseen"), ("spk_sim_retain_test", "spk-sim retained"), ("time_s", "time (s)")],
    "word": [("forget_test_acc", "forgotten word held-out acc"), ("retain_test_acc", "retained words acc"),
             ("forget_train_acc", "forget clips acc"), ("mia_auc", "MIA AUC"), ("time_s", "time (s)")],
}


def table():
    res = json.loads(RESULTS.read_text())
    for which, cols in COLUMNS.items():
        print(f"\n### {which}\n")
        print("| model | seed | " + " | ".join(h for _, h in cols) + " | load |")
        print("|---|---|" + "---|" * (len(cols) + 1))
        order = ["original", f"oracle_{which}", *STRATEGIES]
        rows = sorted((k.split("/") for k in res if k.startswith(f"{which}/")), key=lambda r: (order.index(r[1]), r[2]))
        for w, method, seed in rows:
            v = res[f"{w}/{method}/{seed}"]
            cells = []
            for c, _ in cols:
                x = v.get(c)
                cells.append("-" if x is None else f"{x:.1f}" if c == "time_s" else f"{x:.3f}" if c.startswith(("mia", "spk"))
                             else f"{100 * x:.1f}")
            print(f"| {method} | {seed[1:]} | " + " | ".join(cells) + f" | {v.get('load', float('nan')):.1f} |")


if __name__ == "__main__":
    if sys.argv[1:] == ["--table"]:
        table()
    else:
        main([int(s) for s in sys.argv[1:]] or [0])
