"""Train (resumably) the bench's small Whispers: the original on every training clip and the two oracles
(without the forget speaker's clips / without the forget word's clips), for each seed given.
Usage: ``OMP_NUM_THREADS=1 python benches/audio/train.py 0 1 2``."""

from __future__ import annotations

import json
import sys

import torch

import common


def main(seeds):
    torch.set_num_threads(1)
    items, table = common.load_data()
    sp = common.splits(table)
    times_path = common.CACHE / "train_times.json"
    times = json.loads(times_path.read_text()) if times_path.exists() else {}
    for seed in seeds:
        for name, idx in (("original", sp["train"]), ("oracle_speaker", sp["spk_retain"]), ("oracle_word", sp["word_retain"])):
            _, secs = common.train_model(items, idx, seed=seed, name=name, log=lambda m: print(m, flush=True))
            if secs is not None:
                times[f"{name}_s{seed}"] = secs
                times_path.write_text(json.dumps(times, indent=1))


if __name__ == "__main__":
    main([int(s) for s in sys.argv[1:]] or [0])
