"""Validate before work (issue 20, item 6): broken configs, bad options, paths and files are refused with a
one-line erasus error before any model is built or any gradient computed."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import erasus
from erasus.cli import main


@pytest.fixture
def inputs(tmp_path):
    rng = np.random.default_rng(0)
    for split in ("forget", "retain", "test"):
        np.savez(tmp_path / f"{split}.npz", x=rng.normal(size=(20, 1, 8, 8)).astype(np.float32),
                 y=rng.integers(0, 10, 20))
    from erasus.experiments import SmallCNN

    save_file({k: v.contiguous() for k, v in SmallCNN().state_dict().items()}, str(tmp_path / "w.safetensors"))
    return tmp_path


def _config(folder, **overrides):
    base = {
        "model": f"{{builtin: small_cnn, weights: {folder}/w.safetensors}}",
        "forget": f"{folder}/forget.npz", "retain": f"{folder}/retain.npz", "test": f"{folder}/test.npz",
        "strategy": "grad_diff", "selector": "random", "prune_ratio": "0.2", "steps": "1",
        "output": f"{folder}/out",
    }
    base.update(overrides)
    path = folder / "c.yaml"
    path.write_text("".join(f"{k}: {v}\n" for k, v in base.items() if v is not None))
    return path


@pytest.fixture
def no_work(monkeypatch):
    """Fail the test if the command gets as far as building a model."""
    import erasus.cli.configs as configs

    def refuse(spec):
        raise AssertionError("the command built a model before finding the error")

    monkeypatch.setattr(configs, "build_model", refuse)


@pytest.mark.parametrize("overrides, message", [
    ({"strategy_options": "{lr: fast}"}, "strategy_options.lr for 'grad_diff' must be a number"),
    ({"strategy_options": "[0.1]"}, "strategy_options must be a mapping"),
    ({"strategy_options": "{lrr: 0.1}"}, "unknown option(s) ['lrr'] for strategy 'grad_diff'"),
    ({"selector_options": "{bogus: 1}"}, "unknown option(s) ['bogus'] for selector 'random'"),
    ({"strategy": "no_such"}, "strategy = 'no_such' is not allowed"),
    ({"steps": "0"}, "steps must be a positive integer"),
    ({"forget": "/nowhere/forget.npz"}, "these paths in the config do not exist: forget: '/nowhere/forget.npz'"),
    ({"strategy_options": "{lr: [1, 2"}, "not valid YAML at line"),
])
def test_unlearn_config_errors_come_before_any_work(inputs, no_work, capsys, overrides, message):
    assert main(["unlearn", "--config", str(_config(inputs, **overrides))]) == 2
    err = capsys.readouterr().err
    assert err.startswith("erasus unlearn: error: ") and message in err, err
    assert "Traceback" not in err


def test_unwritable_output_is_reported_before_unlearning(inputs, no_work, capsys):
    (inputs / "taken").write_text("a file, not a folder")
    assert main(["unlearn", "--config", str(_config(inputs, output=f"{inputs}/taken"))]) == 2
    assert "exists and is not a folder" in capsys.readouterr().err


def test_truncated_inputs_get_erasus_errors(inputs, capsys):
    data = (inputs / "forget.npz").read_bytes()
    (inputs / "forget.npz").write_bytes(data[: len(data) // 2])
    assert main(["unlearn", "--config", str(_config(inputs))]) == 2
    assert "cannot read" in capsys.readouterr().err
    (inputs / "forget.npz").write_bytes(data)
    w = (inputs / "w.safetensors").read_bytes()
    (inputs / "w.safetensors").write_bytes(w[:100])
    assert main(["unlearn", "--config", str(_config(inputs))]) == 2
    assert "is not a readable .safetensors file" in capsys.readouterr().err


def test_evaluate_refuses_a_folder_that_is_not_a_complete_save(inputs, capsys):
    (inputs / "partial").mkdir()
    save_file({"a": torch.zeros(1)}, str(inputs / "partial" / "model.safetensors"))
    cfg = inputs / "e.yaml"
    cfg.write_text(f"model: {{builtin: small_cnn, weights: {inputs}/partial}}\nforget: {inputs}/forget.npz\n"
                   f"test: {inputs}/test.npz\nmetrics: [accuracy]\n")
    assert main(["evaluate", "--config", str(cfg)]) == 2
    assert "has no manifest.json" in capsys.readouterr().err
    cfg.write_text(f"model: {{builtin: small_cnn}}\nforget: {inputs}/forget.npz\nmetrics: accuracy\n")
    assert main(["evaluate", "--config", str(cfg)]) == 2
    assert "metrics must be a list of metric names" in capsys.readouterr().err
    cfg.write_text(f"model: {{builtin: small_cnn}}\nforget: {inputs}/forget.npz\nmetrics: [mia]\n")
    assert main(["evaluate", "--config", str(cfg)]) == 2
    assert "metric 'mia' needs the test data set; add `test:`" in capsys.readouterr().err


def test_select_refuses_bad_options_and_files(tmp_path, capsys):
    np.save(tmp_path / "pickled.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.save(tmp_path / "f.npy", np.ones((5, 2), dtype=np.float32))
    assert main(["select", str(tmp_path / "f.npy"), "-k", "2", "-O", "bogus=1"]) == 2
    assert "unknown option(s) ['bogus'] for selector 'kcenter'" in capsys.readouterr().err
    assert main(["select", str(tmp_path / "pickled.npy"), "-k", "2"]) == 2
    assert "is not a plain .npy array" in capsys.readouterr().err
    assert main(["select", str(tmp_path / "f.npy"), "-k", "2", "-O", "metric=[1"]) == 2
    assert "not valid YAML" in capsys.readouterr().err


def test_unlearner_checks_the_strategy_name_before_loading_a_model(monkeypatch, tmp_path):
    import erasus.unlearner as unlearner

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the strategy name was checked")

    monkeypatch.setattr(unlearner, "_load_named_model", refuse)
    with pytest.raises(erasus.RegistryError, match="unknown strategy 'no_such'; known strategies:"):
        erasus.ErasusUnlearner(model_name="org/model", strategy="no_such")
    with pytest.raises(erasus.InvalidInputError, match="unknown option"):
        erasus.ErasusUnlearner(model_name="org/model", selector="kcenter", selector_options={"bogus": 1})
    monkeypatch.undo()
    with pytest.raises(erasus.InvalidInputError, match="is a path that does not exist"):
        erasus.ErasusUnlearner(model_name=str(tmp_path / "missing"), strategy="npo")
