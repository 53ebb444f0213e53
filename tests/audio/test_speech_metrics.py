"""WER / CER against jiwer and a brute-force word-level edit distance; the registered metrics on a tiny
Whisper that transcribes its training clips exactly; the loss MIA on per-utterance losses."""

from __future__ import annotations

import jiwer
import numpy as np
import pytest
import torch

import erasus
from erasus.errors import ErasusTypeError, InvalidInputError
from erasus.metrics.functional import cer, per_speaker_wer, speaker_similarity, transcript_accuracy, wer

REFS = ["turn the light off", "go left", "seven", "stop now please", "yes"]
HYPS = ["turn light of", "go left left", "", "stop now please", "no"]


def _edits(a, b):
    """Levenshtein distance between token lists by the textbook dynamic programme."""
    d = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, d[0] = d[0], i
        for j, y in enumerate(b, 1):
            prev, d[j] = d[j], min(d[j] + 1, d[j - 1] + 1, prev + (x != y))
    return d[len(b)]


def _brute_wer(refs, hyps):
    return sum(_edits(r.split(), h.split()) for r, h in zip(refs, hyps)) / sum(len(r.split()) for r in refs)


def test_wer_and_cer_equal_jiwer_and_a_brute_force_edit_distance():
    assert wer(REFS, HYPS) == pytest.approx(jiwer.wer(REFS, HYPS))
    assert wer(REFS, HYPS) == pytest.approx(_brute_wer(REFS, HYPS))
    assert cer(REFS, HYPS) == pytest.approx(jiwer.cer(REFS, HYPS))
    brute_cer = sum(_edits(list(r), list(h)) for r, h in zip(REFS, HYPS)) / sum(len(r) for r in REFS)
    assert cer(REFS, HYPS) == pytest.approx(brute_cer)
    assert wer(REFS, REFS) == 0.0
    assert transcript_accuracy(REFS, HYPS) == pytest.approx(1 / 5)


def test_per_speaker_wer_is_the_wer_of_each_speakers_utterances():
    speakers = ["a", "b", "a", "b", "c"]
    got = per_speaker_wer(REFS, HYPS, speakers)
    for s in "abc":
        idx = [i for i, x in enumerate(speakers) if x == s]
        assert got[s] == pytest.approx(_brute_wer([REFS[i] for i in idx], [HYPS[i] for i in idx]))


def test_speaker_similarity_is_the_mean_cosine_to_the_reference_centroid():
    g = np.random.default_rng(0)
    e, r = g.standard_normal((6, 8)), g.standard_normal((4, 8))
    c = (r / np.linalg.norm(r, axis=1, keepdims=True)).mean(0)
    ref = np.mean(e @ c / (np.linalg.norm(e, axis=1) * np.linalg.norm(c)))
    assert speaker_similarity(e, r) == pytest.approx(ref)
    with pytest.raises(InvalidInputError, match=r"\(N, d\)"):
        speaker_similarity(e, r[:, :3])


def test_bad_transcript_lists_are_refused():
    with pytest.raises(InvalidInputError, match="as many hypotheses"):
        wer(REFS, HYPS[:2])
    with pytest.raises(ErasusTypeError, match="lists of transcripts"):
        wer("go left", "go")
    with pytest.raises(InvalidInputError, match="reference transcript is empty"):
        cer(["", "go"], ["a", "go"])


def test_registered_wer_is_zero_on_memorised_clips_and_rises_after_gradient_ascent(memorised, tokenizer):
    model, forget, retain = memorised
    assert {"wer", "cer"} <= set(erasus.list_metrics())
    before = erasus.get_metric("wer", tokenizer=tokenizer).compute(model, forget=forget, retain=retain)
    assert before == {"forget_wer": 0.0, "retain_wer": 0.0}
    # the call shape of issue 15: a list of {"input_features", "labels"} items with transcripts of different lengths
    out = erasus.get_strategy("gradient_ascent").unlearn(model=model, forget_data=forget, steps=10, lr=5e-2,
                                                         progress=False)
    after = erasus.get_metric("wer", tokenizer=tokenizer).compute(out, forget=forget)
    assert after["forget_wer"] > 0.5
    assert erasus.get_metric("cer", tokenizer=tokenizer).compute(out, forget=forget)["forget_cer"] > 0.0


def test_loss_mia_on_per_utterance_losses_matches_a_brute_force_auc(memorised, proc):
    from audio_helpers import items

    model, forget, retain = memorised
    unseen = items(proc, ["right", "four", "off"], seed=5)
    members = forget + retain
    got = erasus.get_metric("mia_loss").compute(model, members, unseen)
    with torch.no_grad():
        lm = [float(model(input_features=d["input_features"][None], labels=d["labels"][None]).loss) for d in members]
        ln = [float(model(input_features=d["input_features"][None], labels=d["labels"][None]).loss) for d in unseen]
    # AUC of the score -loss: P(member scores higher) + 0.5 P(tie)
    auc = np.mean([(a < b) + 0.5 * (a == b) for a in lm for b in ln])
    assert got["mia_loss_auc"] == pytest.approx(auc, abs=1e-6)
