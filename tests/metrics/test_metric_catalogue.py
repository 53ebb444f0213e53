"""The metric catalogue: every metric added for issue 16 against an independent computation (scikit-learn,
scipy, brute-force loops, closed forms), the group attribute and the grouped listing."""

from __future__ import annotations

import json
import math
import time

import erasus
import numpy as np
import pytest
import torch
from erasus.metrics import functional as F
from erasus.metrics.base import GROUPS, Metric
from scipy.stats import binomtest, entropy
from sklearn import metrics as skm


@pytest.fixture(scope="module")
def scores():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(300, 6, generator=g) * 2.0
    labels = torch.randint(0, 6, (300,), generator=g)
    labels[:120] = logits[:120].argmax(1)  # better than chance
    return logits, labels


def test_classification_metrics_match_scikit_learn(scores):
    z, y = scores
    pred, yn = z.argmax(1).numpy(), y.numpy()
    assert F.macro_f1(z, y) == pytest.approx(skm.f1_score(yn, pred, average="macro"), abs=1e-12)
    assert F.balanced_accuracy(z, y) == pytest.approx(skm.balanced_accuracy_score(yn, pred), abs=1e-12)
    assert F.cohen_kappa(z, y) == pytest.approx(skm.cohen_kappa_score(yn, pred), abs=1e-12)
    assert F.matthews_corrcoef(z, y) == pytest.approx(skm.matthews_corrcoef(yn, pred), abs=1e-12)
    probs = torch.softmax(z.double(), 1).numpy()
    assert F.macro_auroc(z, y) == pytest.approx(skm.roc_auc_score(yn, probs, multi_class="ovr"), abs=1e-12)
    np.testing.assert_array_equal(F.confusion_matrix(z, y), skm.confusion_matrix(yn, pred, labels=range(6)))
    with pytest.raises(erasus.InvalidInputError, match="labels must lie"):
        F.macro_f1(z, y + 6)


def test_calibration_metrics_match_brute_force(scores):
    z, y = scores
    p = torch.softmax(z.double(), 1).numpy()
    yn = y.numpy()
    brier = np.mean([sum((p[i, c] - (c == yn[i])) ** 2 for c in range(6)) for i in range(len(yn))])
    assert F.brier_score(z, y) == pytest.approx(brier, abs=1e-12)
    conf, correct = p.max(1), (p.argmax(1) == yn)
    gaps = []
    for b in range(10):  # right-closed bins (b/10, (b+1)/10], the first one closed at 0
        inside = [i for i in range(len(yn)) if (b / 10 < conf[i] <= (b + 1) / 10) or (b == 0 and conf[i] == 0)]
        if inside:
            gaps.append(abs(np.mean(correct[inside]) - np.mean(conf[inside])))
    assert F.maximum_calibration_error(z, y, n_bins=10) == pytest.approx(max(gaps), abs=1e-12)
    order = sorted(range(len(yn)), key=lambda i: conf[i])
    ace = sum(abs(correct[g].sum() - conf[g].sum()) for g in (order[k * 30:(k + 1) * 30] for k in range(10))) / 300
    assert F.adaptive_calibration_error(z, y, n_bins=10) == pytest.approx(ace, abs=1e-12)


def test_threshold_mias_match_their_formulas_and_roc(scores):
    z, y = scores
    p = torch.softmax(z.double(), 1).numpy()
    yn = y.numpy()
    mentr = [-(1 - p[i, yn[i]]) * math.log(p[i, yn[i]])
             - sum(p[i, j] * math.log(1 - p[i, j]) for j in range(6) if j != yn[i]) for i in range(len(yn))]
    np.testing.assert_allclose(F.modified_entropy(z, y).numpy(), mentr, rtol=1e-10)
    np.testing.assert_allclose(F.true_label_confidence(z, y).numpy(), p[np.arange(len(yn)), yn], rtol=1e-12)


def test_empirical_epsilon_matches_clopper_pearson_brute_force():
    rng = np.random.default_rng(1)
    m, n = rng.normal(1.5, 1, 80), rng.normal(0, 1, 90)
    delta, alpha = 1e-3, 0.05
    best = 0.0
    for t in np.unique(np.concatenate([m, n])):
        tp, fp = int((m >= t).sum()), int((n >= t).sum())
        # scipy's exact two-sided interval at 1 - alpha has alpha/2 in each tail: the one-sided bounds used
        tpr_lo = binomtest(tp, m.size).proportion_ci(1 - alpha, method="exact").low
        fpr_hi = binomtest(fp, n.size).proportion_ci(1 - alpha, method="exact").high
        for num, den in ((tpr_lo - delta, fpr_hi), (1 - fpr_hi - delta, 1 - tpr_lo)):
            if num > 0 and den > 0:
                best = max(best, math.log(num / den))
    got = F.empirical_epsilon(m, n, delta=delta, alpha=alpha)
    assert got["epsilon_lb"] == pytest.approx(best, rel=1e-9)
    assert F.empirical_epsilon(rng.normal(0, 1, 200), rng.normal(0, 1, 200))["epsilon_lb"] < 0.5
    assert F.empirical_epsilon(m + 10, n)["epsilon_lb"] > 2.5  # perfectly separated 80 vs 90


def test_streisand_statistics_match_brute_force():
    rng = np.random.default_rng(2)
    mf, rf, mt, rt = rng.gamma(3, 1, 60), rng.gamma(2, 1, 70), rng.gamma(2, 1, 80), rng.gamma(2, 1, 80)
    out = F.streisand_check(mf, rf, mt, rt)
    grid = np.concatenate([mf, rf])
    ks = max(abs((mf <= v).mean() - (rf <= v).mean()) for v in grid)
    assert out["streisand_ks"] == pytest.approx(ks, abs=1e-12)
    auc = np.mean([(a > b) + 0.5 * (a == b) for a in mf for b in mt])
    assert out["streisand_auc"] == pytest.approx(auc, abs=1e-12)
    assert out["streisand_loss_gap"] == pytest.approx(mf.mean() - rf.mean())
    assert out["streisand_stands_out"] == 1.0
    same = F.streisand_check(rf, rng.gamma(2, 1, 70), mt, rt)
    assert same["streisand_stands_out"] == 0.0


def test_interclass_confusion_counts_pair_swaps():
    logits = torch.tensor([[0, 9, 0], [9, 0, 0], [9, 0, 0], [0, 0, 9], [0, 9, 0], [0, 0, 9.0]])
    labels = torch.tensor([0, 1, 0, 0, 2, 1])
    # pair (0, 1): samples 0,1,2,3,5 are in the pair; 0 -> 1 and 1 -> 0 are swaps; 2 correct; 3, 5 predict 2
    assert F.interclass_confusion(logits, labels, classes=(0, 1)) == pytest.approx(2 / 5)
    with pytest.raises(erasus.InvalidInputError, match="two different"):
        F.interclass_confusion(logits, labels, classes=(1, 1))


def test_tug_of_war_closed_form():
    u = {"forget": 0.30, "retain": 0.95, "test": 0.80}
    r = {"forget": 0.10, "retain": 0.99, "test": 0.85}
    assert F.tug_of_war(u, r) == pytest.approx(0.8 * 0.96 * 0.95)
    assert F.tug_of_war(r, r) == 1.0


def test_kl_divergence_matches_scipy(scores):
    z, _ = scores
    p = torch.softmax(z.double(), 1)
    q = torch.softmax(z.double().flip(0), 1)
    ref = [entropy(q[i].numpy(), p[i].numpy()) for i in range(len(p))]
    np.testing.assert_allclose(F.kl_divergence(p, q).numpy(), ref, rtol=1e-10)
    assert torch.isfinite(F.kl_divergence(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.5, 0.5]]))).all()


def test_fisher_trace_of_a_linear_softmax_has_its_closed_form():
    torch.manual_seed(0)
    model = torch.nn.Linear(5, 3)
    x, y = torch.randn(40, 5), torch.randint(0, 3, (40,))
    p = torch.softmax(model(x).double(), 1).detach()
    err = p - torch.nn.functional.one_hot(y, 3).double()
    # grad_W l = (p - e_y) x^T and grad_b l = p - e_y, so ||grad l||^2 = ||p - e_y||^2 (||x||^2 + 1)
    closed = float(((err**2).sum(1) * ((x.double() ** 2).sum(1) + 1)).mean())
    assert F.fisher_trace(model, (x, y)) == pytest.approx(closed, rel=1e-6)
    out = erasus.get_metric("epistemic_uncertainty").compute(model, (x, y))
    assert out["forget_efficacy"] == pytest.approx(1 / closed, rel=1e-6)


def test_model_size_counts_parameters_and_bytes():
    model = torch.nn.Sequential(torch.nn.Linear(10, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2))
    with torch.no_grad():
        model[0].weight[:2].zero_()
    params = 10 * 4 + 4 + 4 + 4 + 4 * 2 + 2
    buffers_bytes = (4 + 4) * 4 + 8  # running mean/var float32, num_batches_tracked int64
    out = erasus.get_metric("model_size").compute(model)
    assert out["model_parameters"] == params
    assert out["model_nonzero_parameters"] == params - 20 - 4  # 2 zeroed rows of 10, and BN bias starts at 0
    assert out["model_size_mb"] == pytest.approx((params * 4 + buffers_bytes) / 2**20)


def test_speedup_is_the_ratio_of_wall_times():
    metric = erasus.get_metric("speedup", fn=lambda m: time.sleep(0.02), reference_fn=lambda m: time.sleep(0.1),
                               repeats=2)
    out = metric.compute(torch.nn.Linear(1, 1))
    assert out["time_s"] >= 0.02 and out["reference_time_s"] >= 0.1
    assert out["speedup"] == pytest.approx(out["reference_time_s"] / out["time_s"])
    assert 2.0 < out["speedup"] <= 5.5


def test_metric_classes_on_a_model_agree_with_direct_computation(digits, original, retrained):
    forget, retain, test = digits.forget, digits.retain, digits.test
    with torch.no_grad():
        zf, zt = original(forget[0]), original(test[0])
        rf = retrained(forget[0])
    pred_t = zt.argmax(1).numpy()
    out = erasus.get_metric("f1").compute(original, test=test)
    assert out == {"test_f1": pytest.approx(skm.f1_score(test[1].numpy(), pred_t, average="macro"))}
    mia = erasus.get_metric("mia_confidence").compute(original, forget, test)
    conf = lambda z, y: torch.softmax(z.double(), 1).gather(1, y[:, None]).squeeze(1).numpy()  # noqa: E731
    y_true = np.r_[np.ones(len(forget[1])), np.zeros(len(test[1]))]
    expected = skm.roc_auc_score(y_true, np.r_[conf(zf, forget[1]), conf(zt, test[1])])
    assert mia["mia_confidence_auc"] == pytest.approx(expected)
    assert mia["mia_confidence_auc"] > 0.5  # the original model is more confident on what it trained on
    kl = erasus.get_metric("kl_divergence").compute(original, forget, reference_model=retrained)
    p, q = torch.softmax(zf.double(), 1).numpy(), torch.softmax(rf.double(), 1).numpy()
    assert kl["forget_kl_divergence"] == pytest.approx(np.mean([entropy(q[i], p[i]) for i in range(len(p))]))
    tow = erasus.get_metric("tow").compute(original, forget, retain, test, reference_model=retrained)
    accs = {}
    for name, (x, y) in (("forget", forget), ("retain", retain), ("test", test)):
        with torch.no_grad():
            accs[name] = [float((m(x).argmax(1) == y).float().mean()) for m in (original, retrained)]
    assert tow["tow"] == pytest.approx(np.prod([1 - abs(a - b) for a, b in accs.values()]))
    eps = erasus.get_metric("empirical_epsilon").compute(original, forget, test)
    assert eps["empirical_epsilon"] > 0.0
    st = erasus.get_metric("streisand").compute(retrained, forget, test, reference_model=retrained)
    assert st["streisand_ks"] == 0.0 and st["streisand_stands_out"] == 0.0


def test_every_metric_has_a_group_and_the_catalogue_has_fifty(capsys):
    from erasus.cli import main
    from erasus.registry import METRICS

    names = erasus.list_metrics()
    assert len(names) >= 50
    for name in names:
        assert METRICS.factory(name).group in GROUPS, name
    added = ["f1", "balanced_accuracy", "cohen_kappa", "mcc", "auroc", "brier", "mce", "ace", "mia_confidence",
             "mia_mentropy", "empirical_epsilon", "u_lira", "streisand", "interclass_confusion", "tow",
             "kl_divergence", "epistemic_uncertainty", "model_size", "speedup", "anamnesis_index"]
    for name in added:  # each names its paper or standard, with the year
        doc = METRICS.factory(name).__doc__ or ""
        assert any(ch.isdigit() for ch in doc), name
    assert main(["list", "metrics", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    groups = payload["metric_groups"]
    assert list(groups) == list(GROUPS)
    assert sorted(sum(groups.values(), [])) == sorted(names) == sorted(payload["metrics"])
    assert "u_lira" in groups["privacy"] and "tow" in groups["forgetting"] and "speedup" in groups["efficiency"]
    assert main(["list", "metrics"]) == 0
    text = capsys.readouterr().out
    assert all(f"metrics: {g}" in text for g in GROUPS)


def test_a_metric_with_an_unknown_group_is_refused_at_definition():
    with pytest.raises(erasus.InvalidInputError, match="group must be one of"):
        type("Odd", (Metric,), {"group": "vibes", "compute": lambda self, m: {}})


def test_anamnesis_index_is_one_for_the_oracle_and_zero_for_a_model_that_never_forgot(digits):
    from metric_helpers import fit

    x = torch.cat([digits.retain[0], digits.test[0]])
    y = torch.cat([digits.retain[1], digits.test[1]])
    forget, retain = (x[y == 0], y[y == 0]), (x[y != 0], y[y != 0])  # class forgetting: the oracle must relearn
    original, retrained = fit(x, y, seed=1, epochs=40), fit(*retain, seed=2, epochs=40)
    metric = erasus.get_metric("anamnesis_index", original_model=original, lr=1e-2)
    same = metric.compute(retrained, forget, reference_model=retrained)
    assert same["anamnesis_index"] == 1.0 and same["reference_relearn_time"] > 0
    assert metric.compute(original, forget, reference_model=retrained)["anamnesis_index"] == 0.0
    # random forgetting: a model retrained without 40 random samples already classifies them: undefined, refused
    without = fit(x[40:], y[40:], seed=3, epochs=40)
    with pytest.raises(erasus.InvalidInputError, match="undefined"):
        erasus.get_metric("anamnesis_index", original_model=original).compute(without, (x[:40], y[:40]),
                                                                              reference_model=without)
