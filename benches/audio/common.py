"""Shared pieces of the spoken-word bench: the data split, the model, training with a resumable cache."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import torch

from erasus.data.audio import AudioFolder
from erasus.models import char_whisper_processor, small_whisper
from erasus.tasks.seq2seq import Seq2SeqCollator, Seq2SeqTask

HERE = Path(__file__).parent
# a re-run on other data needs its own cache (features and models are cached there)
CACHE = Path(os.environ.get("ERASUS_AUDIO_CACHE", HERE / ".cache"))
# the defaults are the run of RESULTS.md; ERASUS_AUDIO_* point a re-run at other synthesized data
WORDS_DIR = Path(os.environ.get("ERASUS_AUDIO_WORDS", CACHE / "words"))
# never trained on: the reference for "a speaker the model never saw"
UNSEEN = tuple(os.environ.get("ERASUS_AUDIO_UNSEEN", "en-us-nyc+f3,ked_diphone").split(","))
FORGET_SPEAKER = os.environ.get("ERASUS_AUDIO_FORGET_SPEAKER", "kal_diphone")
FORGET_WORD = os.environ.get("ERASUS_AUDIO_FORGET_WORD", "left")
TRAIN_RENDITIONS = (0, 1, 2, 3)  # renditions 4, 5 of every (speaker, word) are held out
MODEL = dict(d_model=64, layers=1, heads=4, max_target_positions=12)
TRAIN = dict(epochs=25, batch_size=32, lr=3e-3)


def processor():
    return char_whisper_processor(CACHE / "processor", num_mel_bins=40, chunk_length=1)


def load_data():
    """(items, table): every clip as a Whisper item, and its metadata columns as numpy arrays."""
    path = CACHE / "features.pt"
    folder = AudioFolder(WORDS_DIR, "transcripts.csv", speaker_column="speaker")
    table = {"text": np.array(folder.texts), "speaker": np.array(folder.speakers),
             "rendition": np.array([int(r) for r in folder.column("rendition")])}
    if path.exists():
        items = torch.load(path)
    else:
        items = folder.for_whisper(processor())
        torch.save(items, path)
    return items, table


def splits(table):
    """Index arrays of the bench's subsets."""
    sp, txt, rend = table["speaker"], table["text"], table["rendition"]
    seen = ~np.isin(sp, UNSEEN)
    train = seen & np.isin(rend, TRAIN_RENDITIONS)
    test = seen & ~np.isin(rend, TRAIN_RENDITIONS)
    f_sp, f_w = sp == FORGET_SPEAKER, txt == FORGET_WORD
    idx = lambda m: np.flatnonzero(m)  # noqa: E731
    return {
        "train": idx(train),
        # speaker scenario
        "spk_forget": idx(train & f_sp), "spk_retain": idx(train & ~f_sp),
        "spk_forget_test": idx(test & f_sp), "spk_retain_test": idx(test & ~f_sp),
        "unseen": idx(np.isin(sp, UNSEEN) & ~np.isin(rend, TRAIN_RENDITIONS)),
        "unseen_all": idx(np.isin(sp, UNSEEN)),
        # word scenario
        "word_forget": idx(train & f_w), "word_retain": idx(train & ~f_w),
        "word_forget_test": idx(test & f_w), "word_retain_test": idx(test & ~f_w),
    }


def train_model(items, indices, *, seed: int, name: str, log=print):
    """Train (or load from the cache) a small Whisper on ``items[indices]``."""
    path = CACHE / "models" / f"{name}_s{seed}.pt"
    model = small_whisper(processor(), seed=seed, **MODEL)
    if path.exists():
        model.load_state_dict(torch.load(path))
        return model.eval(), None
    task, collate = Seq2SeqTask(), Seq2SeqCollator()
    opt = torch.optim.AdamW(model.parameters(), lr=TRAIN["lr"], weight_decay=0.01)
    n, bs = len(indices), TRAIN["batch_size"]
    steps = TRAIN["epochs"] * ((n + bs - 1) // bs)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=TRAIN["lr"], total_steps=steps, pct_start=0.1)
    g = torch.Generator().manual_seed(seed)
    model.train()
    t0, step = time.perf_counter(), 0
    for epoch in range(TRAIN["epochs"]):
        order = torch.randperm(n, generator=g)
        total = 0.0
        for i in range(0, n, bs):
            batch = collate([items[int(indices[j])] for j in order[i:i + bs]])
            loss = task.loss(model, batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(batch["labels"])
            step += 1
        if epoch % 5 == 4 or epoch == TRAIN["epochs"] - 1:
            log(f"{name} s{seed} epoch {epoch + 1}: loss {total / n:.4f} ({time.perf_counter() - t0:.0f} s)")
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return model.eval(), time.perf_counter() - t0
