"""Bring your own data and model to ``erasus benchmark``: entry points and paths, as a new user would write them."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest

from erasus.cli import main
from erasus.errors import ConfigError
from erasus.experiments import ClaimConfig, run_claim

USER_MODULE = '''
import numpy as np
import torch

def blobs(seed=0):
    rng = np.random.default_rng(seed)
    centers = np.array([[0, 0, 0, 0], [3, 0, 3, 0], [0, 3, 0, 3]], dtype=np.float32)
    y = np.repeat(np.arange(3), 40)
    x = centers[y] + rng.normal(size=(120, 4)).astype(np.float32)
    order = rng.permutation(120)
    x, y = x[order], y[order]
    return x[:90], y[:90], x[90:], y[90:]

def as_datasets():
    xtr, ytr, xte, yte = blobs()
    train = [(torch.from_numpy(a), int(b)) for a, b in zip(xtr, ytr)]
    test = [(torch.from_numpy(a), int(b)) for a, b in zip(xte, yte)]
    return train, test

def mlp(num_classes, input_shape, hidden=16):
    return torch.nn.Sequential(torch.nn.Linear(input_shape[0], hidden), torch.nn.ReLU(),
                               torch.nn.Linear(hidden, num_classes))

def three_things():
    return 1, 2, 3

def flat_inputs():
    xtr, ytr, xte, yte = blobs()
    return xtr[:, 0], ytr, xte[:, 0], yte

def float_labels():
    xtr, ytr, xte, yte = blobs()
    return xtr, ytr + 0.5, xte, yte

def not_a_model(num_classes):
    return "a string"

def too_narrow(input_shape):
    return torch.nn.Linear(input_shape[0], 2)

NOT_CALLABLE = 3
'''

BASE = {"scenario": "class", "forget_class": 2, "strategies": ["gradient_ascent"], "selectors": ["random", "kcenter"],
        "fractions": [0.2], "seeds": [0], "train_epochs": 3}


@pytest.fixture
def user_dir(tmp_path, monkeypatch):
    (tmp_path / "user_data.py").write_text(USER_MODULE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))  # only for this test process's own imports of the reference
    return tmp_path


def _reference_blobs():
    import user_data

    return user_data.blobs()


def test_benchmark_cli_runs_a_users_dataset_and_model(user_dir, capsys):
    cfg = {"dataset": "user_data:blobs", "model": "user_data:mlp", "model_options": {"hidden": 8}, **BASE}
    (user_dir / "bench.yaml").write_text(json.dumps(cfg))  # YAML is a superset of JSON
    assert main(["benchmark", "bench.yaml", "--out", str(user_dir / "report"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (user_dir / "report" / "report.html").is_file()
    assert summary["rows"] == 1 + 2  # the full set and two selectors at one fraction


@pytest.mark.parametrize("dataset", ["user_data:blobs", "user_data.py:blobs", "user_data:as_datasets", "blobs.npz"])
def test_every_way_to_name_a_dataset_reads_the_users_samples(user_dir, dataset):
    xtr, ytr, xte, yte = _reference_blobs()
    np.savez(user_dir / "blobs.npz", x_train=xtr, y_train=ytr, x_test=xte, y_test=yte)
    out = run_claim(ClaimConfig(dataset=dataset, model="user_data:mlp", **BASE))
    # the forget set is the user's class-2 training samples, in their order
    forget = xtr[ytr == 2]
    np.testing.assert_array_equal(out["labels"], ytr[ytr == 2])
    assert out["features"].shape[0] == len(forget)
    ref = [r for r in out["reference"] if r["strategy"] == "original"][0]
    assert 0.0 <= ref["test_acc"] <= 1.0 and len(out["rows"]) == 3


@pytest.mark.parametrize(("field", "value", "match"), [
    ("dataset", "no_such_module:load", "module 'no_such_module' cannot be imported"),
    ("dataset", "user_data:missing", "has no attribute 'missing'; its functions:.*blobs"),
    ("dataset", "user_data:NOT_CALLABLE", "is a int, not a function"),
    ("dataset", "nowhere.py:load", "does not exist"),
    ("dataset", "missing.npz", "no such .npz file"),
    ("dataset", "imagenet", "is not built in"),
    ("model", "user_data:missing", "has no attribute 'missing'"),
    ("model", "resnet", "is not built in"),
])
def test_bad_entry_points_fail_when_the_config_is_read(user_dir, field, value, match):
    cfg = {"dataset": "user_data:blobs", "model": "user_data:mlp", **BASE, field: value}
    with pytest.raises(ConfigError, match=match):
        ClaimConfig(**cfg)


@pytest.mark.parametrize(("dataset", "model", "match"), [
    ("user_data:three_things", "user_data:mlp", "returned a 3-tuple; expected"),
    ("user_data:flat_inputs", "user_data:mlp", "x_train must have a sample axis and feature axes"),
    ("user_data:float_labels", "user_data:mlp", "y_train must be 1-d integer class ids"),
    ("user_data:blobs", "user_data:not_a_model", "returned a str; expected a torch.nn.Module"),
    ("user_data:blobs", "user_data:too_narrow", r"returned \(2, 2\).*expected logits of shape \(batch, 3\)"),
    ("user_data:blobs", "small_cnn", "needs images"),
])
def test_wrong_returns_fail_before_any_training(user_dir, dataset, model, match):
    cfg = ClaimConfig(dataset=dataset, model=model, **BASE)
    with pytest.raises(ConfigError, match=match):
        run_claim(cfg)


def test_cli_reports_a_bad_entry_point_in_one_line(user_dir, capsys):
    (user_dir / "bad.yaml").write_text(textwrap.dedent("""
        dataset: "user_data:missing"
        model: "user_data:mlp"
    """))
    assert main(["benchmark", "bad.yaml", "--out", str(user_dir / "r")]) != 0
    assert "has no attribute 'missing'" in capsys.readouterr().err
