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
