import json

import numpy as np
import pytest
import torch

import erasus
from erasus.data.paths import load_path


def test_image_folder(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    arrays = {}
    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        for i in range(3):
            a = rng.integers(0, 256, size=(5, 4), dtype=np.uint8)
            Image.fromarray(a).save(tmp_path / cls / f"{i}.png")
            arrays[(cls, i)] = a
    ds = load_path(tmp_path)
    assert len(ds) == 6 and ds.classes == ["cat", "dog"]
    x, y = ds[4]  # dog/1.png: classes sorted, files sorted
    assert y == 1 and x.shape == (1, 5, 4)
    np.testing.assert_allclose(x[0].numpy(), arrays[("dog", 1)] / 255.0, rtol=0, atol=1e-7)


def test_arrays_npz_safetensors_npy(tmp_path):
    from safetensors.numpy import save_file

    x = np.arange(12, dtype=np.float64).reshape(6, 2)
    y = np.array([0, 1, 0, 1, 1, 0])
    np.savez(tmp_path / "d.npz", x=x, y=y)
    save_file({"features": x.astype(np.float32), "labels": y}, str(tmp_path / "d.safetensors"))
    np.save(tmp_path / "d.npy", x.astype(np.float32))
    for name in ("d.npz", "d.safetensors"):
        ds = load_path(tmp_path / name)
        xi, yi = ds[3]
        assert xi.dtype == torch.float32 and xi.tolist() == [6.0, 7.0] and int(yi) == 1
    (xi,) = load_path(tmp_path / "d.npy")[5]
    assert xi.tolist() == [10.0, 11.0]


def test_json_and_jsonl_records(tmp_path):
    recs = [{"question": "q1", "answer": "a1"}, {"question": "q2", "answer": "a2"}]
    (tmp_path / "r.json").write_text(json.dumps(recs))
    (tmp_path / "r.jsonl").write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    assert load_path(tmp_path / "r.json")[1] == recs[1]
    assert len(load_path(tmp_path / "r.jsonl")) == 2


def test_pickles_are_refused(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError):
        load_path(tmp_path / "obj.npy")


def test_bad_paths(tmp_path):
    with pytest.raises(erasus.InvalidInputError, match="does not exist"):
        load_path(tmp_path / "missing.npy")
    (tmp_path / "x.csv").write_text("1,2")
    with pytest.raises(erasus.InvalidInputError, match="unsupported data file"):
        load_path(tmp_path / "x.csv")
    np.savez(tmp_path / "odd.npz", a=np.zeros(3), b=np.zeros(3))
    with pytest.raises(erasus.InvalidInputError, match="expected a pair"):
        load_path(tmp_path / "odd.npz")


@pytest.mark.parametrize("ext", [".jsonl", ".json"])
def test_malformed_json_lines_name_the_file_and_line_in_every_loader(tmp_path, ext):
    """Every JSON(-lines) reader of erasus.data reports a broken line as InvalidInputError with its line number,
    not as a bare json.JSONDecodeError; the file itself is left as it was."""
    from erasus.data.llm import read_records
    from erasus.data.vlm import load_captions

    bad = tmp_path / f"bad{ext}"
    text = '{"question": "q1", "answer": "a1", "image": "a.png", "caption": "c"}\n\n{"question": "q2", oops}\n'
    bad.write_text(text)
    with pytest.raises(erasus.InvalidInputError, match=r"bad\.jsonl? line 3 is not JSON"):
        read_records(bad)
    with pytest.raises(erasus.InvalidInputError, match=r"bad\.jsonl? line 3 is not JSON"):
        load_captions(bad)
    match = r"line 3 is not JSON" if ext == ".jsonl" else r"bad\.json is not JSON: .*\(line 3\)"
    with pytest.raises(erasus.InvalidInputError, match=match):
        load_path(bad)
    assert bad.read_text() == text


def test_jsonl_records_must_be_objects(tmp_path):
    p = tmp_path / "r.jsonl"
    p.write_text('{"question": "q"}\n[1, 2]\n')
    with pytest.raises(erasus.InvalidInputError, match=r"r\.jsonl line 2 must be a JSON object, got list"):
        load_path(p)
