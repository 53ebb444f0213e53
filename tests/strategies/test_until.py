"""``unlearn(until=...)``: the stopping rule against a hand-run loop that evaluates the metric at the same steps.

Model and data are used nowhere else in the suite: scikit-learn's wine data (178 samples, 13 features,
3 cultivars) and a tanh MLP.
"""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch
from sklearn.datasets import load_wine

import erasus
from erasus.errors import ConfigError, ErasusError, TargetNotReachedWarning


def _mlp(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(13, 32), torch.nn.Tanh(), torch.nn.Linear(32, 3))


@pytest.fixture(scope="module")
def wine(fit_full_batch):
    x, y = load_wine(return_X_y=True)
    x = (x - x.mean(0)) / x.std(0)
    x, y = torch.tensor(x, dtype=torch.float32), torch.tensor(y)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    x, y = x[perm], y[perm]
    test = (x[:40], y[:40])
    x, y = x[40:], y[40:]
    is_forget = y == 0  # forget one cultivar
    model = fit_full_batch(_mlp(0), x, y, steps=200, lr=1e-2)
    retrained = fit_full_batch(_mlp(1), x[~is_forget], y[~is_forget], steps=200, lr=1e-2)
    return {"model": model, "retrained": retrained, "forget": (x[is_forget], y[is_forget]),
            "retain": (x[~is_forget], y[~is_forget]), "test": test}


def _forget_accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).double().mean())


def _hand_gradient_ascent(model, x, y, *, lr, every, below, cap):
    """GA written out: SGD (momentum 0.9) ascending the mean cross-entropy of the one full forget batch;
    forget accuracy checked every ``every`` steps and at the cap."""
    model = copy.deepcopy(model).train()
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    values = [(0, _forget_accuracy(model, x, y))]
    for step in range(1, cap + 1):
        opt.zero_grad()
        (-torch.nn.functional.cross_entropy(model(x), y)).backward()
        opt.step()
        if step % every == 0 or step == cap:
            values.append((step, _forget_accuracy(model, x, y)))
            if values[-1][1] < below:
                break
    return model, values


def test_until_stops_where_a_hand_run_loop_meets_the_target(wine):
    x, y = wine["forget"]
    assert _forget_accuracy(wine["model"], x, y) > 0.9  # the model knows the cultivar before unlearning
    ref_model, ref_values = _hand_gradient_ascent(wine["model"], x, y, lr=0.01, every=3, below=0.2, cap=400)
    assert ref_values[-1][1] < 0.2 and ref_values[-1][0] < 400  # the hand loop reaches the target before its cap

    ga = erasus.get_strategy("gradient_ascent", batch_size=len(y))
    before = copy.deepcopy(wine["model"].state_dict())
    out = ga.unlearn(model=wine["model"], forget_data=(x, y), lr=0.01, steps=400, progress=False,
                     until={"metric": "forget_accuracy", "below": 0.2, "every": 3})
    got = [(c["step"], c["value"]) for c in ga.history_.checks]
    assert [s for s, _ in got] == [s for s, _ in ref_values]
    np.testing.assert_allclose([v for _, v in got], [v for _, v in ref_values], atol=1e-12)
    assert len(ga.history_) == ref_values[-1][0]  # one loss per step actually taken, none after the stop
    assert ga.info_["until"]["reached"] is True and ga.history_.target_reached is True
    assert ga.info_["until"]["step"] == ref_values[-1][0] and ga.info_["until"]["cap"] == 400
    elapsed = [c["elapsed_s"] for c in ga.history_.checks]
    assert elapsed[0] == 0.0 and all(b >= a for a, b in zip(elapsed, elapsed[1:]))
    for (name, p), q in zip(out.named_parameters(), ref_model.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5, msg=name)
    for k, v in wine["model"].state_dict().items():
        assert torch.equal(v, before[k])  # the caller's model is untouched


def test_cap_first_warns_and_says_not_reached(wine):
    x, y = wine["forget"]
    ga = erasus.get_strategy("gradient_ascent", batch_size=len(y))
    with pytest.warns(TargetNotReachedWarning, match="forget_accuracy below 0 not reached"):
        ga.unlearn(model=wine["model"], forget_data=(x, y), lr=1e-4, steps=7, progress=False,
                   until={"metric": "forget_accuracy", "below": 0.0, "every": 3})
    assert [c["step"] for c in ga.history_.checks] == [0, 3, 6, 7]  # and once more at the cap
    assert len(ga.history_) == 7 and ga.info_["until"]["reached"] is False and ga.history_.until["cap"] == 7


def test_the_probe_does_not_change_the_training_trajectory(wine):
    """A run stopped by ``until`` at step s ends at the weights of a plain s-step run (shuffled minibatches,
    so the probe must leave the data-order RNG alone)."""
    x, y = wine["forget"]
    rx, ry = wine["retain"]
    gd = erasus.get_strategy("grad_diff", batch_size=8)
    out = gd.unlearn(model=wine["model"], forget_data=(x, y), retain_data=(rx, ry), lr=0.02, steps=300,
                     progress=False, until={"metric": "forget_accuracy", "below": 0.5, "every": 4})
    stop = gd.info_["until"]["step"]
    assert gd.info_["until"]["reached"] and 0 < stop < 300
    plain = erasus.get_strategy("grad_diff", batch_size=8).unlearn(
        model=wine["model"], forget_data=(x, y), retain_data=(rx, ry), lr=0.02, steps=stop, progress=False)
    for p, q in zip(out.parameters(), plain.parameters()):
        assert torch.equal(p, q)
    assert gd.info_["until"]["value"] == _forget_accuracy(plain, x, y)


def test_unlearner_probes_the_whole_forget_set_not_the_coreset(wine):
    x, y = wine["forget"]
    un = erasus.ErasusUnlearner(wine["model"], strategy="gradient_ascent", selector="random", prune_ratio=0.25,
                                seed=0, batch_size=64)
    un.fit((x, y), until={"metric": "forget_accuracy", "below": 0.3, "every": 2}, steps=500, lr=0.01,
           progress=False)
    assert len(un.selection_) < len(y)
    assert un.history_.until["reached"] is True
    assert un.history_.checks[-1]["value"] == _forget_accuracy(un.model_, x, y) < 0.3
    assert un.history_.checks[-2]["value"] >= 0.3  # it stopped at the first check that met the target


def test_avg_gap_to_the_retrained_model_in_points(wine):
    x, y = wine["forget"]
    rule = {"avg_gap_to": wine["retrained"], "below": 30.0, "every": 5, "retain": wine["retain"], "test": wine["test"]}
    gd = erasus.get_strategy("grad_diff", batch_size=16)
    out = gd.unlearn(model=wine["model"], forget_data=(x, y), retain_data=wine["retain"], lr=0.02, steps=400,
                     progress=False, until=rule)
    suite = erasus.metrics.MetricSuite(["avg_gap"])
    for model, value in ((wine["model"], gd.history_.checks[0]["value"]), (out, gd.history_.checks[-1]["value"])):
        gap = suite.run(model, forget=(x, y), retain=wine["retain"], test=wine["test"],
                        reference_model=wine["retrained"])["avg_gap"]
        assert value == pytest.approx(100 * gap, abs=1e-9)
    assert gd.history_.checks[0]["value"] > 30.0 and gd.info_["until"]["reached"]


def test_any_registered_metric_with_its_splits(wine):
    """``mia_efficacy`` (SalUn's SVC attack) needs retain and test; with them it is the metric's own number."""
    x, y = wine["forget"]
    gd = erasus.get_strategy("grad_diff", batch_size=16)
    rule = {"metric": "mia_efficacy", "above": 0.9, "every": 5, "test": wine["test"]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TargetNotReachedWarning)
        out = gd.unlearn(model=wine["model"], forget_data=(x, y), retain_data=wine["retain"], lr=0.02, steps=60,
                         progress=False, until=rule)
    expected = erasus.get_metric("mia_efficacy").compute(out, (x, y), wine["retain"], wine["test"])["mia_efficacy"]
    assert gd.history_.checks[-1]["value"] == pytest.approx(expected)


@pytest.mark.parametrize(("until", "match"), [
    ({"metric": "forget_acuracy", "below": 0.1}, "neither a registered metric"),
    ({"metric": "forget_accuracy"}, "exactly one of 'below' or 'above'.*neither"),
    ({"metric": "forget_accuracy", "below": 0.1, "above": 0.0}, "exactly one of 'below' or 'above'.*both"),
    ({"metric": "forget_accuracy", "below": "0.1"}, "must be a number"),
    ({"metric": "forget_accuracy", "below": True}, "must be a number"),
    ({"metric": "forget_accuracy", "below": float("nan")}, "must be finite"),
    ({"metric": "forget_accuracy", "below": 0.1, "every": 0}, "positive integer"),
    ({"metric": "forget_accuracy", "below": 0.1, "evry": 5}, "unknown until key"),
    ({"below": 0.1}, "exactly one of 'metric'"),
    ({"metric": "mia_efficacy", "above": 0.9}, "needs the test set"),
    ({"avg_gap_to": "retrained.pt", "below": 2.0}, "must be a torch.nn.Module"),
    ("forget_accuracy < 0.1", "must be a dict"),
])
@pytest.mark.parametrize("inplace", [False, True])
def test_bad_until_fails_before_any_work_and_leaves_the_model(wine, until, match, inplace):
    x, y = wine["forget"]
    model = copy.deepcopy(wine["model"])
    before = copy.deepcopy(model.state_dict())
    strategy = erasus.get_strategy("gradient_ascent")
    with pytest.raises(ErasusError, match=match):
        strategy.unlearn(model=model, forget_data=(x, y), retain_data=wine["retain"], steps=5, inplace=inplace,
                         progress=False, until=until)
    assert strategy.history_ == []
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


def test_unlearner_refuses_a_bad_rule_before_selection(wine, monkeypatch):
    un = erasus.ErasusUnlearner(wine["model"], strategy="gradient_ascent", selector="kcenter", prune_ratio=0.5)
    monkeypatch.setattr(un, "select", lambda *a, **k: pytest.fail("selection ran before the rule was checked"))
    with pytest.raises(ConfigError, match="exactly one of 'below' or 'above'"):
        un.fit(wine["forget"], until={"metric": "forget_accuracy"}, steps=5, progress=False)


def test_strategies_without_a_training_loop_refuse_until(wine):
    with pytest.raises(ErasusError, match="does not train through one"):
        erasus.get_strategy("ssd").unlearn(model=wine["model"], forget_data=wine["forget"],
                                           retain_data=wine["retain"], until={"metric": "forget_accuracy",
                                                                              "below": 0.1}, progress=False)


def test_repair_phase_runs_after_a_stopped_forgetting_phase(wine):
    """UNSIR: the impair phase stops at the target, the retain repair phase still takes its whole budget."""
    x, y = wine["forget"]
    s = erasus.get_strategy("unsir", batch_size=16, noise_steps=3)
    s.unlearn(model=wine["model"], forget_data=(x, y), retain_data=wine["retain"], lr=0.05, steps=40,
              progress=False, until={"metric": "forget_accuracy", "below": 0.9, "every": 1})
    stop = s.info_["until"]["step"]
    assert s.info_["until"]["reached"] and stop < 40
    assert len(s.history_) == stop + 40  # impair steps up to the stop, then 40 repair steps


def test_a_diverging_run_keeps_its_probes_and_the_model(wine):
    """A loss that turns NaN mid-run (here: one forget sample holds a NaN) raises, leaves the caller's model alone,
    and history_ keeps the losses and probes taken before it."""
    x, y = wine["forget"]
    broken = x.clone()
    broken[20, 0] = float("nan")
    before = copy.deepcopy(wine["model"].state_dict())
    ga = erasus.get_strategy("gradient_ascent", batch_size=8)
    with pytest.raises(erasus.NonFiniteError, match="lower lr"):
        ga.unlearn(model=wine["model"], forget_data=(broken, y), lr=0.01, steps=200, progress=False,
                   until={"metric": "forget_accuracy", "below": 0.0, "every": 1, "data": (x, y)})
    assert ga.history_.checks[0]["step"] == 0 and len(ga.history_.checks) == len(ga.history_) + 1
    assert [c["step"] for c in ga.history_.checks] == list(range(len(ga.history_) + 1))
    for k, v in wine["model"].state_dict().items():
        assert torch.equal(v, before[k])


def test_cpu_seconds_exclude_the_probe(wine, monkeypatch):
    """``cpu_s`` (process CPU seconds, probes excluded): the probe's own CPU, measured inside it, plus the last
    check's ``cpu_s`` fit inside the CPU seconds measured around the whole call (disjoint spans of one clock);
    a probe counted in ``cpu_s`` would break that, since each probe here burns more CPU than the training."""
    import time

    from erasus.strategies.until import StoppingRule

    spent: list[float] = []
    plain = StoppingRule.value

    def slow_value(self, model):
        c0 = time.process_time()
        out = plain(self, model)
        a = torch.full((200, 200), 1.0 / 200, dtype=torch.float64)
        for _ in range(60):  # deterministic work, far more than one training step of this MLP
            a = a @ a + 1e-3
        spent.append(time.process_time() - c0)
        return out

    monkeypatch.setattr(StoppingRule, "value", slow_value)
    x, y = wine["forget"]
    ga = erasus.get_strategy("gradient_ascent", batch_size=len(y))
    c0 = time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TargetNotReachedWarning)
        ga.unlearn(model=wine["model"], forget_data=(x, y), lr=1e-4, steps=12, progress=False,
                   until={"metric": "forget_accuracy", "below": 0.0, "every": 2})
    outer = time.process_time() - c0
    cpu = [c["cpu_s"] for c in ga.history_.checks]
    assert len(cpu) == len(spent) == 7  # step 0, then every 2 steps up to 12
    assert cpu[0] == 0.0 and all(b >= a for a, b in zip(cpu, cpu[1:]))
    assert cpu[-1] + sum(spent) <= outer, (cpu, spent, outer)
    assert ga.history_.until["cpu_s"] == cpu[-1]
    assert ga.history_.until["probe_cpu_s"] >= sum(spent)  # measured around the probe, so it holds it
