"""Synthesize the spoken-word set: WORDS x SPEAKERS x RENDITIONS, 16 kHz mono WAV + transcripts.csv.

A "speaker" is one synthesizer voice: espeak-ng accents x voice variants (formant synthesis) and the three
festival English voices installed from Debian (kal / ked diphone, slt HTS). Each rendition draws its own
speed and pitch (espeak-ng ``-s``/``-p``; festival ``Duration_Stretch`` and, since diphone voices have no
pitch knob here, a resampling pitch/tempo shift) from a seeded RNG, so renditions of one word by one speaker
differ. Resumable: existing files are kept.

Usage: ``python benches/audio/synth.py [--out DIR] [--words a,b,..] [--espeak voice+variant,..]
[--festival voice,..] [--renditions N]`` (a re-run with other voices and words: point ``ERASUS_AUDIO_WORDS`` at
``--out`` and set ``ERASUS_AUDIO_FORGET_SPEAKER`` / ``_FORGET_WORD`` / ``_UNSEEN`` for ``common.py``).
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

WORDS = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go",
         "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
ESPEAK = ["en-us+m1", "en-us+f2", "en-gb+m3", "en-gb+f4", "en-gb-scotland+m7", "en-gb-x-rp+f1", "en-029+m2",
          "en-us-nyc+f3", "en-gb-x-gbclan+klatt", "en-gb-x-gbcwmd+f5", "en-us+croak"]
FESTIVAL = ["kal_diphone", "ked_diphone", "cmu_us_slt_arctic_hts"]
RENDITIONS = 6
SR = 16000


def _to_16k(x: np.ndarray, sr: int) -> np.ndarray:
    if x.ndim > 1:
        x = x.mean(axis=1)
    if sr != SR:
        g = np.gcd(sr, SR)
        x = resample_poly(x, SR // g, sr // g)
    return x.astype(np.float32)


def _trim(x: np.ndarray, *, thresh: float = 0.01) -> np.ndarray:
    idx = np.flatnonzero(np.abs(x) > thresh * max(float(np.abs(x).max()), 1e-6))
    return x if idx.size == 0 else x[max(idx[0] - 160, 0): idx[-1] + 160]


def espeak(voice: str, word: str, speed: int, pitch: int) -> np.ndarray:
    with tempfile.NamedTemporaryFile(suffix=".wav") as f:
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", f.name, word],
                       check=True, capture_output=True)
        x, sr = sf.read(f.name)
    return _to_16k(x, sr)


def festival_batch(voice: str, jobs: list[tuple[str, float, Path]]) -> None:
    """One festival process per voice (its start-up costs ~1.5 s), one utterance per job."""
    lines = [f"(voice_{voice})"]
    for word, stretch, path in jobs:
        lines.append(f"(Parameter.set 'Duration_Stretch {stretch:.3f})")
        lines.append(f'(utt.save.wave (utt.synth (Utterance Text "{word}")) "{path}" \'riff)')
    with tempfile.NamedTemporaryFile("w", suffix=".scm", delete=False) as f:
        f.write("\n".join(lines) + "\n")
    subprocess.run(["festival", "-b", f.name], check=True, capture_output=True)
    Path(f.name).unlink()


def main(out: Path, words: list[str], espeak_voices: list[str], festival_voices: list[str], renditions: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    rng = np.random.default_rng(0)
    for voice in espeak_voices:
        for word in words:
            for r in range(renditions):
                speed, pitch = int(rng.integers(120, 200)), int(rng.integers(25, 75))
                path = out / voice / f"{word}_{r}.wav"
                if not path.exists():
                    path.parent.mkdir(parents=True, exist_ok=True)
                    sf.write(path, _trim(espeak(voice, word, speed, pitch)), SR)
                rows.append({"path": str(path.relative_to(out)), "text": word, "speaker": voice, "rendition": r,
                             "speed": speed, "pitch": pitch})
    for voice in festival_voices:
        jobs, shifts = [], {}
        for word in words:
            for r in range(renditions):
                stretch, shift = float(rng.uniform(0.8, 1.3)), float(rng.uniform(0.9, 1.1))
                path = out / voice / f"{word}_{r}.wav"
                shifts[path] = shift
                rows.append({"path": str(path.relative_to(out)), "text": word, "speaker": voice, "rendition": r,
                             "speed": round(stretch, 3), "pitch": round(shift, 3)})
                if not path.exists():
                    jobs.append((word, stretch, path.with_suffix(".raw.wav")))
        if jobs:
            (out / voice).mkdir(parents=True, exist_ok=True)
            festival_batch(voice, jobs)
            for _, _, raw in jobs:
                x, sr = sf.read(raw)
                x = _to_16k(x, sr)
                # resampling by 1/shift then playing at 16 kHz raises pitch and tempo by `shift`
                up, down = 1000, int(round(1000 * shifts[raw.with_suffix("").with_suffix(".wav")]))
                sf.write(raw.with_suffix("").with_suffix(".wav"), _trim(resample_poly(x, up, down).astype(np.float32)), SR)
                raw.unlink()
    with open(out / "transcripts.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    print(f"{len(rows)} clips in {out}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / ".cache" / "words")
    ap.add_argument("--words", default=",".join(WORDS))
    ap.add_argument("--espeak", default=",".join(ESPEAK))
    ap.add_argument("--festival", default=",".join(FESTIVAL))
    ap.add_argument("--renditions", type=int, default=RENDITIONS)
    a = ap.parse_args()
    split = lambda v: [x for x in v.split(",") if x]  # noqa: E731
    main(a.out, split(a.words), split(a.espeak), split(a.festival), a.renditions)
