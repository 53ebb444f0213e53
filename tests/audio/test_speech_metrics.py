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


def _cosine_to_centroid(e, r):
    """Hand computation in numpy float64: mean_i cos(e_i, mean_j r_j / ||r_j||)."""
    e, r = np.asarray(e, dtype=np.float64), np.asarray(r, dtype=np.float64)
    c = (r / np.linalg.norm(r, axis=1, keepdims=True)).mean(0)
    return float(np.mean(e @ c / (np.linalg.norm(e, axis=1) * np.linalg.norm(c))))


def test_registered_speaker_similarity_with_the_models_own_encoder_matches_a_hand_computation(memorised):
    model, forget, retain = memorised
    enrol = retain[:2]

    def pooled(items):  # Whisper's last encoder state, mean over frames, one clip at a time
        with torch.no_grad():
            return np.stack([model.get_encoder()(input_features=d["input_features"][None]).last_hidden_state[0]
                             .mean(0).double().numpy() for d in items])

    assert "speaker_similarity" in erasus.list_metrics()
    got = erasus.get_metric("speaker_similarity").compute(model, forget=forget, test=retain[2:], reference=enrol)
    assert set(got) == {"forget_speaker_similarity", "test_speaker_similarity"}
    assert got["forget_speaker_similarity"] == pytest.approx(_cosine_to_centroid(pooled(forget), pooled(enrol)), abs=1e-5)
    assert got["test_speaker_similarity"] == pytest.approx(_cosine_to_centroid(pooled(retain[2:]), pooled(enrol)), abs=1e-5)


def test_speaker_similarity_with_a_supplied_encoder_embeds_each_batch_through_it(memorised):
    model, forget, retain = memorised
    calls = []

    def encoder(m, batch):  # a stand-in speaker encoder: the clip's mean log-mel spectrum per bin
        calls.append(m)
        return batch["input_features"].mean(-1)

    spectra = lambda items: np.stack([d["input_features"].double().mean(-1).numpy() for d in items])  # noqa: E731
    got = erasus.get_metric("speaker_similarity", encoder=encoder, batch_size=2).compute(
        model, retain=retain, reference=forget)
    assert got["retain_speaker_similarity"] == pytest.approx(_cosine_to_centroid(spectra(retain), spectra(forget)),
                                                             abs=1e-6)
    assert calls and all(m is model for m in calls)


def test_speaker_similarity_refuses_bad_input_before_any_work(memorised):
    model, forget, retain = memorised
    with pytest.raises(InvalidInputError, match="pass reference="):
        erasus.get_metric("speaker_similarity").compute(model, forget=forget)
    with pytest.raises(InvalidInputError, match="at least one of"):
        erasus.get_metric("speaker_similarity").compute(model, reference=forget)
    with pytest.raises(ErasusTypeError, match="callable"):
        erasus.get_metric("speaker_similarity", encoder="ecapa")
    with pytest.raises(InvalidInputError, match=r"expected \(batch, d\)"):
        erasus.get_metric("speaker_similarity", encoder=lambda m, b: b["input_features"]).compute(
            model, forget=forget, reference=retain)
