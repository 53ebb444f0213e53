"""The measured spoken-word run: forget one speaker / one word from a small Whisper trained here on
synthesized speech, with erasus' public API, against oracles retrained without them.

    python benches/audio/synth.py                 # once: 20 words x 14 voices x 6 renditions (espeak-ng, festival)
    OMP_NUM_THREADS=1 python benches/audio/train.py 0 1 2     # original + 2 oracles per seed (cached)
    OMP_NUM_THREADS=1 python benches/audio/run.py 0 1 2       # unlearning grid -> results.json (resumable)
    python benches/audio/table.py                 # the tables of RESULTS.md

Scenarios (``common.py``): *speaker*: forget every training clip of ``FORGET_SPEAKER`` (80 clips; the
UnSLU-BENCH setting); *word*: forget every training clip of ``FORGET_WORD`` (48 clips). For each, NegGrad+
(the method UnSLU-BENCH found best balanced) on the full forget set and on 10% coresets (random, k-center,
CRAIG on the start model's mean-pooled encoder states) via ``erasus.ErasusUnlearner``; evaluation by greedy
transcription (exact-match accuracy, ``erasus.metrics.functional.wer``) on held-out renditions and by the loss
MIA (``get_metric("mia_loss")``) of the forget clips against held-out clips of the same kind.
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
from erasus.metrics.functional import transcript_accuracy, wer
from erasus.metrics.speech import transcribe_items

RESULTS = Path(os.environ.get("ERASUS_AUDIO_RESULTS", common.HERE / "results.json"))
SELECTORS = ("full", "random", "kcenter", "craig")
# chosen by sweep.py on training clips only (sweep_word.json): the smallest lr that empties the forget clips
UNLEARN = dict(strategy="neg_grad_plus", optimizer="adam", lr=3e-4, steps=30, beta=0.9, batch_size=16)


def _eval(model, items, sets, tok):
    out = {}
    for name, idx in sets.items():
        refs, hyps = transcribe_items(model, [items[int(i)] for i in idx], tokenizer=tok)
        out[f"{name}_acc"] = transcript_accuracy(refs, hyps)
        out[f"{name}_wer"] = wer(refs, hyps)
    return out


def _mia(model, items, members, nonmembers):
    m = erasus.get_metric("mia_loss").compute(model, [items[int(i)] for i in members], [items[int(i)] for i in nonmembers])
    return m["mia_loss_auc"]


def scenario_sets(sp, which):
    if which == "speaker":
        return (sp["spk_forget"], sp["spk_retain"],
                {"forget_test": sp["spk_forget_test"], "retain_test": sp["spk_retain_test"], "unseen": sp["unseen"],
                 "forget_train": sp["spk_forget"]},
                # members: the forgotten speaker's training clips; non-members: an unseen speaker's clips
                sp["unseen_all"])
    return (sp["word_forget"], sp["word_retain"],
            {"forget_test": sp["word_forget_test"], "retain_test": sp["word_retain_test"], "forget_train": sp["word_forget"]},
            sp["word_forget_test"])


def main(seeds):
    torch.set_num_threads(1)
    items, table = common.load_data()
    sp = common.splits(table)
    tok = common.processor().tokenizer
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}

    def save():
        RESULTS.write_text(json.dumps(results, indent=1, sort_keys=True))

    for seed in seeds:
        models = {}
        for name in ("original", "oracle_speaker", "oracle_word"):
            path = common.CACHE / "models" / f"{name}_s{seed}.pt"
            if not path.exists():
                print(f"skip seed {seed}: {path.name} not trained yet", flush=True)
                break
            models[name], _ = common.train_model(items, [], seed=seed, name=name)
        else:
            for which in ("speaker", "word"):
                forget, retain, sets, nonmembers = scenario_sets(sp, which)
                rng = np.random.default_rng(seed)
                nonmembers = rng.choice(nonmembers, size=min(len(nonmembers), len(forget)), replace=False)
                for ref in ("original", f"oracle_{which}"):
                    key = f"{which}/{ref}/s{seed}"
                    if key not in results:
                        results[key] = {**_eval(models[ref], items, sets, tok),
                                        "mia_auc": _mia(models[ref], items, forget, nonmembers)}
                        save()
                        print(key, results[key], flush=True)
                forget_items = [items[int(i)] for i in forget]
                retain_items = [items[int(i)] for i in retain]
                for selector in SELECTORS:
                    key = f"{which}/{selector}/s{seed}"
                    if key in results:
                        continue
                    opts = {k: v for k, v in UNLEARN.items() if k not in ("strategy", "steps")}
                    unl = erasus.ErasusUnlearner(models["original"], strategy=UNLEARN["strategy"], selector=selector,
                                                 prune_ratio=0.1, seed=seed, features="embeddings", **opts)
                    t0 = time.perf_counter()
                    out = unl.fit(forget_items, retain_items, steps=UNLEARN["steps"], progress=False)
                    secs = time.perf_counter() - t0
                    results[key] = {**_eval(out, items, sets, tok), "mia_auc": _mia(out, items, forget, nonmembers),
                                    "time_s": secs, "coreset": int(len(unl.selection_)), **unl.timings_}
                    save()
                    print(key, {k: round(v, 3) for k, v in results[key].items()}, flush=True)


if __name__ == "__main__":
    main([int(s) for s in sys.argv[1:]] or [0])
