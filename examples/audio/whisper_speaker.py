"""Forget one speaker's recordings from a Whisper speech recogniser with NPO, keeping the other speakers'
transcripts (the mid-level API on ``WhisperWrapper``).

    python examples/audio/whisper_speaker.py --tiny        # synthetic "speakers" and a tiny Whisper, offline, CPU
    python examples/audio/whisper_speaker.py --model openai/whisper-tiny --audio-dir clips/ --speaker alice

With ``--audio-dir`` the clips come from an :class:`erasus.data.audio.AudioFolder`: a folder with a
``transcripts.csv`` of ``path,text,speaker`` rows; the forget set is every clip of ``--speaker``. With ``--tiny``
each "speaker" is a pitch band of tones with its own transcripts, and a small Whisper built offline
(``erasus.models.small_whisper``) first learns them all. NPO (Zhang et al., COLM 2024) runs on the decoder only
(``train_only("decoder")``) with an NLL retain term on the other speakers (KL is for causal LMs), through the seq2seq task's sequence log-likelihood. It prints
the word error rate on the forget speaker's and the other speakers' clips, before and after.
"""

from __future__ import annotations

import argparse
import copy
import tempfile

import numpy as np
import torch

import erasus
from erasus.models import WhisperWrapper

SPEAKERS = {"alba": ["go left", "seven", "up", "stop now"], "cato": ["no", "six", "down", "one two"],
            "dora": ["yes", "right", "eight", "open"]}
FORGET_SPEAKER = "alba"


def synthetic(processor, *, seed: int) -> tuple[list[dict], list[str]]:
    """One clip per transcript: a speaker is a pitch band, each clip a distinct tone in it, so a tiny model can
    learn to tell them apart (real speech needs ``--audio-dir``)."""
    g = np.random.default_rng(seed)
    clips, texts, speakers = [], [], []
    for s, (speaker, lines) in enumerate(SPEAKERS.items()):
        for i, text in enumerate(lines):
            t = np.arange(int(g.integers(8000, 16000))) / 16000
            tone = 0.3 * np.sin(2 * np.pi * (250 + 600 * s + 120 * i) * t) + 0.02 * g.standard_normal(t.size)
            clips.append(tone.astype(np.float32))
            texts.append(text)
            speakers.append(speaker)
    wrapper = WhisperWrapper(erasus.models.small_whisper(processor, d_model=32, layers=1, heads=2,
                                                         max_target_positions=16, seed=seed), processor=processor)
    return wrapper.items(clips, texts, sampling_rate=16000), speakers, wrapper


def memorise(wrapper: WhisperWrapper, items: list[dict], *, steps: int) -> None:
    from erasus.models.tiny import memorise as fit
    from erasus.tasks.seq2seq import Seq2SeqCollator, Seq2SeqTask

    fit(wrapper, Seq2SeqCollator()(items), task=Seq2SeqTask(), steps=steps, lr=1e-2, optimizer="adam")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tiny", action="store_true", help="synthetic speakers and a tiny Whisper built offline")
    p.add_argument("--model", default="openai/whisper-tiny", help="hub id or local Whisper folder")
    p.add_argument("--audio-dir", default=None, help="an AudioFolder: clips + transcripts.csv (path,text,speaker)")
    p.add_argument("--speaker", default=FORGET_SPEAKER, help="the speaker to forget")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.manual_seed(args.seed)
    if args.tiny:
        processor = erasus.models.char_whisper_processor(tempfile.mkdtemp(prefix="whisper_proc_"), num_mel_bins=16,
                                                         chunk_length=1)
        items, speakers, wrapper = synthetic(processor, seed=args.seed)
        memorise(wrapper, items, steps=150)
    else:
        if args.audio_dir is None:
            raise SystemExit("a real Whisper model needs recordings: pass --audio-dir (see the docstring)")
        from erasus.data.audio import AudioFolder

        wrapper = WhisperWrapper(args.model)
        folder = AudioFolder(args.audio_dir)
        items, speakers = folder.for_whisper(wrapper.processor), folder.speakers
    forget = [it for it, s in zip(items, speakers) if s == args.speaker]
    retain = [it for it, s in zip(items, speakers) if s != args.speaker]
    if not forget or not retain:
        raise SystemExit(f"speaker {args.speaker!r} must have some clips and other speakers too")

    wer = erasus.get_metric("wer")
    start = wer.compute(wrapper, forget, retain)
    student = copy.deepcopy(wrapper).train_only("decoder")  # unlearn in the text decoder; the audio encoder stays
    npo = erasus.get_strategy("npo", lr=2e-3 if args.tiny else 1e-5, optimizer="adamw", retain_loss="nll", alpha=5.0,
                              batch_size=4)
    out = npo.unlearn(model=student, forget_data=forget, retain_data=retain, steps=args.steps, seed=args.seed,
                      progress=False)
    end = wer.compute(out, forget, retain)

    encoder_kept = all(torch.equal(a, b) for a, b in zip(wrapper.parameter_groups()["encoder"],
                                                          out.parameter_groups()["encoder"]))
    print(f"forget: {len(forget)} clips of {args.speaker!r}; retain: {len(retain)} clips of the other speakers")
    print(f"{'':12s}{'before':>8s}{'after':>8s}")
    for k in start:
        print(f"{k:12s}{start[k]:8.3f}{end[k]:8.3f}")
    print(f"audio encoder unchanged (train_only('decoder')): {encoder_kept}")


if __name__ == "__main__":
    main()
