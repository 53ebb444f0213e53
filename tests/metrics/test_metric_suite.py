"""MetricSuite: runs a named set, evaluates each split once, reports the reference's values, gaps and avg_gap."""

from __future__ import annotations

import numpy as np
import pytest
from erasus.errors import ConfigError, InvalidInputError, RegistryError
from erasus.metrics import AccuracyMetric, MetricSuite, MIAEfficacyMetric, outputs


def test_suite_matches_the_individual_metrics(digits, original):
    out = MetricSuite(["accuracy", "mia_efficacy", "ece"], ece={"n_bins": 5}).run(
        original, forget=digits.forget, retain=digits.retain, test=digits.test)
    acc = AccuracyMetric().compute(original, digits.forget, digits.retain, digits.test)
    assert {k: out[k] for k in acc} == pytest.approx(acc)
    assert out["mia_efficacy"] == MIAEfficacyMetric().compute(original, digits.forget, digits.retain, digits.test)[
        "mia_efficacy"]
    assert "test_ece" in out and not any(k.startswith(("gap/", "reference/")) for k in out)
    assert "avg_gap" not in out


def test_suite_reports_reference_values_gaps_and_avg_gap(digits, original, retrained):
    out = MetricSuite(["avg_gap", "loss", "js_divergence"]).run(
        original, forget=digits.forget, retain=digits.retain, test=digits.test, reference_model=retrained)
    keys = ("forget_accuracy", "retain_accuracy", "test_accuracy", "mia_efficacy")
    for k in keys + ("test_loss",):
        assert out[f"gap/{k}"] == pytest.approx(abs(out[k] - out[f"reference/{k}"]))
    assert out["avg_gap"] == pytest.approx(np.mean([abs(out[k] - out[f"reference/{k}"]) for k in keys]))
    assert "forget_js_divergence" in out and "reference/forget_js_divergence" not in out
    ref = AccuracyMetric().compute(retrained, digits.forget)["forget_accuracy"]
    assert out["reference/forget_accuracy"] == ref


def test_suite_evaluates_each_model_and_split_once(digits, original, monkeypatch):
    calls = []
    real = outputs.ordered_loader

    def counting(data, **kw):
        calls.append(id(data))
        return real(data, **kw)

    monkeypatch.setattr(outputs, "ordered_loader", counting)
    MetricSuite(["accuracy", "ece", "mia", "mia_efficacy"]).run(
        original, forget=digits.forget, retain=digits.retain, test=digits.test)
    assert sorted(calls) == sorted(id(d) for d in (digits.forget, digits.retain, digits.test))


def test_suite_errors_name_what_is_missing(digits, original):
    with pytest.raises(InvalidInputError, match="retain"):
        MetricSuite(["mia_efficacy"]).run(original, forget=digits.forget, test=digits.test)
    with pytest.raises(InvalidInputError, match="reference_model"):
        MetricSuite(["weight_distance"]).run(original, forget=digits.forget)
    with pytest.raises(InvalidInputError, match="reference_model"):
        MetricSuite(["avg_gap"]).run(original, forget=digits.forget, retain=digits.retain, test=digits.test)
    with pytest.raises(ConfigError, match="lira"):
        MetricSuite(["accuracy"], lira={"n_shadow": 2})
    with pytest.raises(RegistryError, match="unknown metric"):
        MetricSuite(["acuracy"])
