"""The coreset-versus-full experiment behind `erasus demo` and `erasus benchmark`, on a tiny budget."""

import json

import numpy as np
import pytest

import erasus
from erasus.cli import main
from erasus.experiments import ClaimConfig, run_claim, summarize


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    cfg = ClaimConfig(strategies=("gradient_ascent",), selectors=("random", "kcenter"), fractions=(0.1, 1.0),
                      train_epochs=3)
    export = tmp_path_factory.mktemp("export")
    return run_claim(cfg, export_dir=export), cfg, export


def test_rows_cover_every_method_and_gaps_are_measured_against_the_oracle(result):
    res, cfg, _ = result
    names = [(r["strategy"], r["selector"], r["fraction"]) for r in res["rows"]]
    assert names == [("gradient_ascent", "full", 1.0), ("gradient_ascent", "random", 0.1),
                     ("gradient_ascent", "kcenter", 0.1)]
    oracle = next(r for r in res["reference"] if r["strategy"] == "retrain")
    assert oracle["avg_gap"] == 0.0
    for r in res["rows"] + res["reference"]:
        expected = np.mean([abs(r[k] - oracle[k]) for k in ("forget_acc", "retain_acc", "test_acc", "mia")])
        assert r["avg_gap"] == pytest.approx(expected, abs=1e-12)
        assert 0 <= r["forget_acc"] <= 1 and r["time_s"] >= 0
    full = res["rows"][0]
    assert full["speedup"] == 1.0
    for r in res["rows"][1:]:  # speed-up of a coreset run = full-set time / its own time (features included)
        assert r["speedup"] == pytest.approx(full["time_s"] / r["time_s"])
    assert len(res["selections"]["kcenter 10%"]) == round(0.1 * 135)


def test_exported_files_drive_the_unlearn_and_evaluate_commands(result, tmp_path, capsys):
    folder = result[2]
    assert {p.name for p in folder.iterdir()} == {"original.safetensors", "retrained.safetensors", "forget.npz",
                                                   "retain.npz", "test.npz", "manifest.json"}
    (tmp_path / "unlearn.yaml").write_text(
        f"model: {{builtin: small_cnn, weights: {folder}/original.safetensors}}\n"
        f"forget: {folder}/forget.npz\nretain: {folder}/retain.npz\ntest: {folder}/test.npz\n"
        f"strategy: grad_diff\nstrategy_options: {{lr: 0.005}}\nselector: kcenter\nprune_ratio: 0.2\n"
        f"output: {tmp_path}/out\n"
    )
    assert main(["unlearn", "--config", str(tmp_path / "unlearn.yaml"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["coreset_size"] == 27 and "mia_accuracy" in out and "retain_accuracy" in out
    (tmp_path / "evaluate.yaml").write_text(
        f"model: {{builtin: small_cnn, weights: {tmp_path}/out}}\n"
        f"reference: {{builtin: small_cnn, weights: {folder}/retrained.safetensors}}\n"
        f"forget: {folder}/forget.npz\nretain: {folder}/retain.npz\ntest: {folder}/test.npz\n"
        "metrics: [accuracy, mia_efficacy]\n"
    )
    assert main(["evaluate", "--config", str(tmp_path / "evaluate.yaml"), "--json"]) == 0
    ev = json.loads(capsys.readouterr().out)
    assert ev["retain_accuracy"] == pytest.approx(out["retain_accuracy"])
    assert "avg_gap" in ev


def test_config_errors_name_the_key_and_allowed_values(tmp_path, capsys):
    (tmp_path / "bad.yaml").write_text("model: {builtin: small_cnn}\nforget: f.npz\nstrategy: forget_all\n")
    assert main(["unlearn", "--config", str(tmp_path / "bad.yaml")]) == 2
    err = capsys.readouterr().err
    assert "strategy = 'forget_all' is not allowed" in err and "grad_diff" in err
    (tmp_path / "bad2.yaml").write_text("dataset: digits\nscenaro: random\n")
    assert main(["benchmark", str(tmp_path / "bad2.yaml")]) == 2
    assert "unknown key(s) ['scenaro']" in capsys.readouterr().err
    with pytest.raises(erasus.ConfigError, match="unknown selector 'nope'"):
        ClaimConfig(selectors=("nope",))


def test_summarize_means_and_stds():
    rows = [{"scenario": "random", "strategy": "ga", "selector": "kcenter", "fraction": 0.1, "avg_gap": g,
             "time_s": 1.0} for g in (0.1, 0.3)]
    (s,) = summarize(rows)
    assert s["avg_gap"] == pytest.approx(0.2) and s["avg_gap_std"] == pytest.approx(0.1) and s["seeds"] == 2


def test_a_diverged_run_is_recorded_not_fatal():
    cfg = ClaimConfig(strategies=("gradient_ascent",), selectors=("random",), fractions=(0.5,), train_epochs=1,
                      strategy_options={"gradient_ascent": {"lr": 1e12, "default_epochs": 5}})
    res = run_claim(cfg)
    assert [r["selector"] for r in res["rows"]] == ["full", "random"]
    full = res["rows"][0]
    assert "became" in full["diverged"] and full["avg_gap"] is None
    (s, _) = summarize(res["rows"])
    assert s["diverged"] == 1 and "avg_gap" not in s


def test_until_stops_each_run_at_the_target_and_records_where(tmp_path):
    # the rule is the call shape as config data; the row's forget accuracy (MetricSuite over the whole
    # forget set) is an independent evaluation of the model the run stopped with
    cfg = ClaimConfig(strategies=("gradient_ascent",), selectors=("random",), fractions=(0.2,), train_epochs=3,
                      until={"metric": "forget_accuracy", "below": 0.5, "every": 5}, until_steps=200)
    cfg.to_yaml(tmp_path / "c.yaml")
    assert ClaimConfig.from_yaml(tmp_path / "c.yaml") == cfg
    res = run_claim(cfg)
    full, coreset = res["rows"]
    original = next(r for r in res["reference"] if r["strategy"] == "original")
    assert original["forget_acc"] > 0.5  # the target needs unlearning
    assert full["until_reached"] and 0 < full["until_step"] <= 200 and full["until_step"] % 5 == 0
    for row in (full, coreset):
        assert row["until_value"] == pytest.approx(row["forget_acc"], abs=1e-12)
        if row["until_reached"]:
            assert row["forget_acc"] < 0.5
        else:
            assert row["until_step"] == 200 and row["forget_acc"] >= 0.5


def test_until_avg_gap_to_the_retrained_oracle_is_the_rows_avg_gap():
    cfg = ClaimConfig(strategies=("grad_diff",), selectors=("random",), fractions=(0.5,), train_epochs=3,
                      until={"avg_gap_to": "retrained", "below": 0.0, "every": 10}, until_steps=20)
    res = run_claim(cfg)
    for row in res["rows"]:  # an unreachable target: every run runs to the cap, probing the experiment's splits
        assert not row["until_reached"] and row["until_step"] == 20
        assert row["until_value"] == pytest.approx(100 * row["avg_gap"], abs=1e-9)


def test_bad_until_fails_before_any_training(monkeypatch):
    import erasus.experiments.claim as claim

    def no_training(*args, **kwargs):
        raise AssertionError("trained a model before checking the until rule")

    monkeypatch.setattr(claim, "train_classifier", no_training)
    with pytest.raises(erasus.ConfigError, match="neither a registered metric"):
        run_claim(ClaimConfig(until={"metric": "forget_acc", "below": 0.1}, train_epochs=1))
    with pytest.raises(erasus.ConfigError, match="exactly one of 'below' or 'above'"):
        run_claim(ClaimConfig(until={"metric": "forget_accuracy"}, train_epochs=1))
    with pytest.raises(erasus.ConfigError, match="must be 'retrained'"):
        ClaimConfig(until={"avg_gap_to": "oracle.pt", "below": 1.0})
    with pytest.raises(erasus.ConfigError, match=r"may not name \['data'\]"):
        ClaimConfig(until={"metric": "forget_accuracy", "below": 0.1, "data": "x.npz"})
    with pytest.raises(erasus.ConfigError, match="until_steps must be a positive integer"):
        ClaimConfig(until={"metric": "forget_accuracy", "below": 0.1}, until_steps=0)
    with pytest.raises(erasus.ConfigError, match="only apply with ClaimConfig.until"):
        ClaimConfig(until_steps=10)


def test_every_shipped_claim_config_parses():
    from pathlib import Path

    configs = sorted((Path(__file__).resolve().parents[2] / "configs").glob("claim_*.yaml"))
    assert any(p.name == "claim_digits_until.yaml" for p in configs)
    for path in configs:
        cfg = ClaimConfig.from_yaml(path)
        assert ClaimConfig.from_dict(cfg.to_dict()) == cfg
    assert ClaimConfig.from_yaml(configs[[p.name for p in configs].index("claim_digits_until.yaml")]).until == {
        "avg_gap_to": "retrained", "below": 2.0, "every": 5}
