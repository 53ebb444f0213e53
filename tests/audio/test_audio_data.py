"""AudioFolder: WAV / FLAC + CSV / JSONL transcripts, resampling against scipy's polyphase resampler,
speaker ids from a column, Whisper / classifier items, and clear errors for bad folders."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch
from scipy.signal import resample_poly

from erasus.data.audio import AudioFolder, load_audio
from erasus.errors import InvalidInputError


def _tone(sr, seconds=0.5, freq=440.0):
    t = np.arange(int(sr * seconds)) / sr
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.fixture
def folder(tmp_path):
    sf.write(tmp_path / "a.wav", _tone(16000), 16000)
    sf.write(tmp_path / "b.flac", np.stack([_tone(8000, freq=300), _tone(8000, freq=300)], 1), 8000)  # stereo 8 kHz
    sf.write(tmp_path / "c.wav", _tone(22050, seconds=0.3), 22050)
    (tmp_path / "t.csv").write_text("path,text,speaker\na.wav,go left,alice\nb.flac,seven,bob\nc.wav,up,alice\n")
    return tmp_path


def test_clips_are_mono_at_the_target_rate_and_match_a_polyphase_reference(folder):
    ds = AudioFolder(folder, "t.csv")
    assert len(ds) == 3 and ds.texts == ["go left", "seven", "up"] and ds.speakers == ["alice", "bob", "alice"]
    a, b, c = ds[0], ds[1], ds[2]
    assert a["audio"].dtype == np.float32 and a["audio"].shape == (8000,)
    np.testing.assert_allclose(a["audio"], _tone(16000), atol=1e-4)  # 16 kHz WAV read as is (16-bit PCM)
    assert b["audio"].shape == (8000,) and b["speaker"] == "bob"
    ref = resample_poly(_tone(8000, freq=300), 2, 1)
    # soxr and scipy agree away from the edges; the tone keeps its pitch
    np.testing.assert_allclose(b["audio"][200:-200], ref[200:-200], atol=2e-2)
    assert c["audio"].shape[0] == pytest.approx(0.3 * 16000, abs=2)
    spectrum = np.abs(np.fft.rfft(c["audio"]))
    assert np.fft.rfftfreq(c["audio"].size, 1 / 16000)[spectrum.argmax()] == pytest.approx(440, abs=5)


def test_jsonl_transcripts_and_whisper_items(folder, proc):
    (folder / "t.jsonl").write_text("\n".join(json.dumps(r) for r in [
        {"path": "a.wav", "text": "go left", "who": "alice"}, {"path": "c.wav", "text": "up", "who": "carol"}]))
    ds = AudioFolder(folder, "t.jsonl", speaker_column="who")
    assert ds.speakers == ["alice", "carol"]
    items = ds.for_whisper(proc)
    assert items[0]["input_features"].shape == (16, 100)
    tok = proc.tokenizer
    assert tok.decode(items[0]["labels"], skip_special_tokens=True) == "go left"
    assert int(items[0]["labels"][0]) != tok.convert_tokens_to_ids("<|startoftranscript|>")


def test_classifier_items_pad_to_the_longest_clip(folder):
    from transformers import Wav2Vec2FeatureExtractor

    fe = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=False)
    ds = AudioFolder(folder, "t.csv")
    items = ds.for_classifier(fe, label_column="speaker")
    assert [int(it["labels"]) for it in items] == [0, 1, 0]  # alice, bob in sorted order
    assert all(it["input_values"].shape == (8000,) for it in items)
    assert torch.equal(items[2]["input_values"][4800:], torch.zeros(8000 - 4800))


def test_bad_folders_fail_at_once_with_the_row(folder, tmp_path):
    with pytest.raises(InvalidInputError, match="does not exist"):
        AudioFolder(tmp_path / "nope")
    (folder / "bad.csv").write_text("path,text,speaker\na.wav,go,x\nmissing.wav,up,y\n")
    with pytest.raises(InvalidInputError, match="row 3: audio file .*missing.wav does not exist"):
        AudioFolder(folder, "bad.csv")
    (folder / "nocol.csv").write_text("file,text\na.wav,go\n")
    with pytest.raises(InvalidInputError, match=r"no column\(s\) \['path', 'speaker'\]"):
        AudioFolder(folder, "nocol.csv")
    (folder / "bad.jsonl").write_text('{"path": "a.wav", "text": "go", "speaker": "a"}\n{oops\n')
    with pytest.raises(InvalidInputError, match="line 2 is not JSON"):
        AudioFolder(folder, "bad.jsonl")
    (folder / "x.txt").write_text("not audio")
    (folder / "txt.csv").write_text("path,text,speaker\nx.txt,go,a\n")
    with pytest.raises(InvalidInputError, match="not a WAV/FLAC/OGG"):
        AudioFolder(folder, "txt.csv")
    (folder / "fake.wav").write_text("not audio")
    (folder / "fake.csv").write_text("path,text,speaker\nfake.wav,go,a\n")
    with pytest.raises(InvalidInputError, match="cannot read"):
        AudioFolder(folder, "fake.csv")
    with pytest.raises(InvalidInputError, match="cannot read"):
        load_audio(folder / "fake.wav")
