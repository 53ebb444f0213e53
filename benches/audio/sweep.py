"""Choose NegGrad+'s optimizer settings on TRAINING data only (seed 0): forget-set clips the unlearner holds
and a fixed sample of retain-set training clips; the held-out renditions are not looked at.
Usage: ``OMP_NUM_THREADS=1 python benches/audio/sweep.py`` -> sweep.json."""

from __future__ import annotations

import json
import sys

import numpy as np
import torch

import common
import erasus
from erasus.metrics.functional import transcript_accuracy
from erasus.metrics.speech import transcribe_items

GRID = [dict(optimizer="adam", lr=lr, beta=beta) for lr in (3e-4, 1e-3) for beta in (0.5, 0.9)]
STEPS = 30


def main(which):
    torch.set_num_threads(1)
    items, table = common.load_data()
    sp = common.splits(table)
    tok = common.processor().tokenizer
    model, _ = common.train_model(items, [], seed=0, name="original")
    f = sp["word_forget"] if which == "word" else sp["spk_forget"]
    r = sp["word_retain"] if which == "word" else sp["spk_retain"]
    probe = np.random.default_rng(0).choice(r, 160, replace=False)
    out_path = common.HERE / f"sweep_{which}.json"
    rows = json.loads(out_path.read_text()) if out_path.exists() else []
    for cfg in GRID:
        if any(row["cfg"] == cfg for row in rows):
            continue
        out = erasus.get_strategy("neg_grad_plus", batch_size=16, **cfg).unlearn(
            model=model, forget_data=[items[int(i)] for i in f], retain_data=[items[int(i)] for i in r],
            steps=STEPS, seed=0, progress=False)
        acc = {n: transcript_accuracy(*transcribe_items(out, [items[int(i)] for i in idx], tokenizer=tok))
               for n, idx in (("forget_train", f), ("retain_probe", probe))}
        rows.append({"cfg": cfg, "steps": STEPS, **acc})
        out_path.write_text(json.dumps(rows, indent=1))
        print(which, cfg, acc, flush=True)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "word")
