"""Markdown tables of results.json (mean +- std over the seeds present): ``python benches/audio/table.py``."""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path

import numpy as np

import common

COLUMNS = {
    "speaker": [("forget_test_acc", "forgotten speaker, held-out acc"), ("unseen_acc", "unseen speakers acc"),
                ("retain_test_acc", "retained speakers acc"), ("forget_train_acc", "forget clips acc"),
                ("mia_auc", "MIA AUC (forget vs unseen spk)"), ("time_s", "time (s)")],
    "word": [("forget_test_acc", "forgotten word, held-out acc"), ("retain_test_acc", "retained words acc"),
             ("forget_train_acc", "forget clips acc"), ("mia_auc", "MIA AUC (forget vs held-out)"), ("time_s", "time (s)")],
}
ROWS = ("original", "oracle", "full", "random", "kcenter", "craig")


def main():
    res = json.loads(Path(os.environ.get("ERASUS_AUDIO_RESULTS", common.HERE / "results.json")).read_text())
    for which, cols in COLUMNS.items():
        agg = defaultdict(lambda: defaultdict(list))
        for key, vals in res.items():
            w, method, seed = key.split("/")
            if w != which:
                continue
            method = "oracle" if method.startswith("oracle") else method
            for c, _ in cols:
                if c in vals:
                    agg[method][c].append(vals[c])
        seeds = sorted({k.split("/")[2] for k in res if k.startswith(which)})
        print(f"\n### {which} ({', '.join(seeds)})\n")
        print("| model | " + " | ".join(h for _, h in cols) + " |")
        print("|---|" + "---|" * len(cols))
        for m in ROWS:
            if m not in agg:
                continue
            cells = []
            for c, _ in cols:
                v = agg[m].get(c)
                if not v:
                    cells.append("-")
                elif c == "time_s":
                    cells.append(f"{np.mean(v):.1f}")
                elif c == "mia_auc":
                    cells.append(f"{np.mean(v):.3f} ± {np.std(v):.3f}")
                else:
                    cells.append(f"{100 * np.mean(v):.1f} ± {100 * np.std(v):.1f}")
            label = {"full": "NegGrad+ full forget set", "random": "NegGrad+ 10% random", "kcenter": "NegGrad+ 10% k-center",
                     "craig": "NegGrad+ 10% CRAIG"}.get(m, m)
            print(f"| {label} (n={len(agg[m][cols[0][0]])}) | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
