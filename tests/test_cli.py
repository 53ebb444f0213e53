import json
import subprocess
import sys

import numpy as np
import pytest

from erasus.cli import main


def test_list_json(capsys):
    assert main(["list", "selectors", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert "kcenter" in out["selectors"]


def test_select_from_npy_writes_indices(tmp_path, capsys):
    x = np.random.default_rng(0).normal(size=(300, 5)).astype(np.float32)
    np.save(tmp_path / "f.npy", x)
    out = tmp_path / "idx.npy"
    assert main(["select", str(tmp_path / "f.npy"), "-k", "12", "--method", "kcenter", "-o", str(out)]) == 0
    idx = np.load(out)
    ref = __import__("erasus").select(x, 12, method="kcenter", seed=0).indices
    np.testing.assert_array_equal(idx, ref)


def test_select_errors_exit_nonzero_with_message(tmp_path, capsys):
    x = np.zeros((5, 2), dtype=np.float32)
    np.save(tmp_path / "f.npy", x)
    assert main(["select", str(tmp_path / "f.npy"), "-k", "9"]) == 2
    assert "exceeds the number of samples" in capsys.readouterr().err
    assert main(["select", str(tmp_path / "missing.npy"), "-k", "1"]) == 2


def test_console_script_runs():
    proc = subprocess.run([sys.executable, "-m", "erasus.cli", "--version"], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.startswith("erasus ")


@pytest.mark.parametrize("bad", [["select"], ["nope"]])
def test_usage_errors(bad):
    with pytest.raises(SystemExit) as exc:
        main(bad)
    assert exc.value.code == 2


def test_init_writes_the_shipped_example_configs_into_an_empty_folder(tmp_path, monkeypatch, capsys):
    from pathlib import Path

    from erasus.cli.configs import EvaluateConfig, UnlearnConfig

    monkeypatch.chdir(tmp_path)
    assert main(["init"]) == 0
    repo = Path(__file__).resolve().parents[1] / "configs"
    for f in repo.glob("*.yaml"):  # the repository's configs/ is the shipped folder
        assert (tmp_path / "configs" / f.name).read_text() == f.read_text()
    cfg = UnlearnConfig.from_yaml(tmp_path / "configs" / "unlearn_digits.yaml")
    assert cfg.forget == "reports/demo/digits/forget.npz"  # relative: `erasus demo` in the same folder writes it
    EvaluateConfig.from_yaml(tmp_path / "configs" / "evaluate_digits.yaml")
    assert main(["init", "unlearn_digits"]) == 2
    assert "already exists; pass --force" in capsys.readouterr().err
    assert main(["init", "nope"]) == 2
    assert "no example config named ['nope']" in capsys.readouterr().err
