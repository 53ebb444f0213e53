"""The pure metric functions against independent computations (sklearn, scipy, brute force, closed forms)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from erasus.errors import InvalidInputError, NonFiniteError
from erasus.metrics import functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import jensenshannon
from scipy.stats import entropy as scipy_entropy
from scipy.stats import norm
from sklearn.metrics import roc_auc_score


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def test_topk_accuracy_matches_counting_by_hand():
    logits = torch.tensor(_rng().normal(size=(200, 7)))
    labels = torch.tensor(_rng(1).integers(0, 7, size=200))
    for k in (1, 3, 7):
        by_hand = np.mean([labels[i].item() in np.argsort(-logits[i].numpy())[:k] for i in range(200)])
        assert F.topk_accuracy(logits, labels, k=k) == pytest.approx(by_hand)
    assert F.topk_accuracy(logits, labels, k=7) == 1.0


def test_topk_accuracy_rejects_bad_shapes_and_k():
    with pytest.raises(InvalidInputError, match="labels"):
        F.topk_accuracy(torch.zeros(4, 3), torch.zeros(5, dtype=torch.long))
    with pytest.raises(InvalidInputError, match="k must be"):
        F.topk_accuracy(torch.zeros(4, 3), torch.zeros(4, dtype=torch.long), k=4)


def test_ece_matches_brute_force_binning():
    rng = _rng(2)
    logits = torch.tensor(rng.normal(scale=3.0, size=(500, 5)))
    labels = torch.tensor(rng.integers(0, 5, size=500))
    probs = torch.softmax(logits, 1).numpy()
    for n_bins in (1, 10, 15):
        total = 0.0
        for b in range(n_bins):
            lo, hi = b / n_bins, (b + 1) / n_bins
            idx = [i for i in range(500) if lo < probs[i].max() <= hi]
            if idx:
                acc = np.mean([probs[i].argmax() == labels[i].item() for i in idx])
                conf = np.mean([probs[i].max() for i in idx])
                total += len(idx) / 500 * abs(acc - conf)
        assert F.expected_calibration_error(logits, labels, n_bins=n_bins) == pytest.approx(total, abs=1e-12)


def test_ece_is_zero_for_a_perfectly_calibrated_set():
    # confidence 0.75 with 3 of 4 right in the only populated bin
    logits = torch.log(torch.tensor([[0.75, 0.25]] * 4, dtype=torch.float64))
    labels = torch.tensor([0, 0, 0, 1])
    assert F.expected_calibration_error(logits, labels) == pytest.approx(0.0, abs=1e-12)


def test_js_divergence_matches_scipy():
    rng = _rng(3)
    p = rng.dirichlet(np.ones(6), size=50)
    q = rng.dirichlet(np.ones(6), size=50)
    q[0] = p[0]
    p[1, :3] = 0.0
    p[1] /= p[1].sum()
    ours = F.js_divergence(torch.tensor(p), torch.tensor(q)).numpy()
    ref = np.array([jensenshannon(p[i], q[i], base=2) ** 2 for i in range(50)])
    np.testing.assert_allclose(ours, ref, atol=1e-12)
    assert ours[0] == pytest.approx(0.0, abs=1e-12)
    nat = F.js_divergence(torch.tensor(p), torch.tensor(q), base=np.e).numpy()
    np.testing.assert_allclose(nat, ref * np.log(2), atol=1e-12)


def test_js_divergence_of_disjoint_supports_is_one_bit():
    assert float(F.js_divergence(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]]))[0]) == pytest.approx(1.0)


def test_activation_distance_is_l2_of_probabilities():
    rng = _rng(4)
    p, q = rng.dirichlet(np.ones(4), size=20), rng.dirichlet(np.ones(4), size=20)
    np.testing.assert_allclose(F.activation_distance(torch.tensor(p), torch.tensor(q)).numpy(),
                               np.sqrt(((p - q) ** 2).sum(1)), atol=1e-12)


def test_zrf_matches_scipy_and_is_one_for_identical_outputs():
    rng = _rng(5)
    a, b = rng.normal(size=(30, 10)), rng.normal(size=(30, 10))
    pa = np.exp(a) / np.exp(a).sum(1, keepdims=True)
    pb = np.exp(b) / np.exp(b).sum(1, keepdims=True)
    ref = 1 - np.mean([jensenshannon(pa[i], pb[i], base=2) ** 2 for i in range(30)])
    assert F.zrf_score(torch.tensor(a), torch.tensor(b)) == pytest.approx(ref, abs=1e-12)
    assert F.zrf_score(torch.tensor(a), torch.tensor(a)) == pytest.approx(1.0)


def test_attack_summary_matches_sklearn_and_brute_force_thresholds():
    rng = _rng(6)
    members, nonmembers = rng.normal(1.0, 1.0, 300), rng.normal(0.0, 1.0, 400)
    out = F.attack_summary(members, nonmembers)
    y = np.r_[np.ones(300), np.zeros(400)]
    s = np.r_[members, nonmembers]
    assert out["auc"] == pytest.approx(roc_auc_score(y, s))
    # brute force over every threshold "member iff score >= t"
    best_bal, tpr_at = 0.0, {0.001: 0.0, 0.01: 0.0}
    for t in np.r_[np.inf, np.sort(s)]:
        tpr, fpr = (members >= t).mean(), (nonmembers >= t).mean()
        best_bal = max(best_bal, (tpr + 1 - fpr) / 2)
        for f in tpr_at:
            if fpr <= f:
                tpr_at[f] = max(tpr_at[f], tpr)
    assert out["balanced_accuracy"] == pytest.approx(best_bal)
    assert out["advantage"] == pytest.approx(2 * best_bal - 1)
    assert out["tpr_at_fpr_0.001"] == pytest.approx(tpr_at[0.001])
    assert out["tpr_at_fpr_0.01"] == pytest.approx(tpr_at[0.01])


def test_attack_summary_rejects_empty_and_nan():
    with pytest.raises(InvalidInputError, match="non-member"):
        F.attack_summary([1.0], [])
    with pytest.raises(NonFiniteError):
        F.attack_summary([1.0, np.nan], [0.0])


def test_loss_threshold_attack_auc_is_auc_of_negative_loss():
    rng = _rng(7)
    lm, ln = rng.exponential(0.2, 100), rng.exponential(1.0, 120)
    out = F.loss_threshold_attack(torch.tensor(lm), torch.tensor(ln))
    assert out["auc"] == pytest.approx(roc_auc_score(np.r_[np.ones(100), np.zeros(120)], -np.r_[lm, ln]))
    assert out["auc"] > 0.7


def test_prediction_entropy_matches_scipy():
    logits = _rng(8).normal(scale=4, size=(40, 9))
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    np.testing.assert_allclose(F.prediction_entropy(torch.tensor(logits)).numpy(), scipy_entropy(p, axis=1), atol=1e-10)


def test_mia_features_match_their_formulas():
    rng = _rng(9)
    logits = rng.normal(scale=3, size=(25, 4))
    y = rng.integers(0, 4, size=25)
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    lt, yt = torch.tensor(logits), torch.tensor(y)
    np.testing.assert_allclose(F.mia_features(lt, yt, kind="confidence")[:, 0], p[np.arange(25), y], atol=1e-12)
    np.testing.assert_allclose(F.mia_features(lt, yt, kind="prob"), p, atol=1e-12)
    np.testing.assert_allclose(F.mia_features(lt, yt, kind="correctness")[:, 0], (p.argmax(1) == y), atol=0)
    py = p[np.arange(25), y]
    m_ent = -(1 - py) * np.log(py) - np.array(
        [sum(p[i, c] * np.log(1 - p[i, c]) for c in range(4) if c != y[i]) for i in range(25)])
    np.testing.assert_allclose(F.mia_features(lt, yt, kind="m_entropy")[:, 0], m_ent, atol=1e-10)
    with pytest.raises(InvalidInputError, match="unknown MIA feature"):
        F.mia_features(lt, yt, kind="loss")  # type: ignore[arg-type]


def test_entropy_mia_with_retain_flags_member_like_forget_samples():
    rng = _rng(10)
    retain, test = rng.normal(0.1, 0.05, 400), rng.normal(1.0, 0.05, 400)
    member_like = F.entropy_mia(rng.normal(0.1, 0.05, 100), test, retain)
    test_like = F.entropy_mia(rng.normal(1.0, 0.05, 100), test, retain)
    assert member_like["mia_accuracy"] == 1.0 and member_like["mia_auc"] == 1.0
    assert test_like["mia_accuracy"] == 0.0
    assert test_like["mia_auc"] == pytest.approx(0.5, abs=0.1)


def test_entropy_mia_without_retain_is_cross_fitted():
    rng = _rng(11)
    test = rng.normal(1.0, 0.3, 300)
    same = F.entropy_mia(rng.normal(1.0, 0.3, 300), test)
    separable = F.entropy_mia(rng.normal(-1.0, 0.3, 300), test)
    assert separable["mia_accuracy"] > 0.95 and separable["mia_auc"] > 0.95
    assert abs(same["mia_auc"] - 0.5) < 0.1 and abs(same["mia_balanced_accuracy"] - 0.5) < 0.1
    with pytest.raises(InvalidInputError, match="cross-fitted"):
        F.entropy_mia([0.1], test)


def test_svc_mia_efficacy_counts_forget_samples_called_non_members():
    rng = _rng(12)
    retain, test = rng.normal(0.95, 0.02, (300, 1)), rng.normal(0.5, 0.1, (200, 1))
    assert F.svc_mia_efficacy(rng.normal(0.95, 0.02, (50, 1)), retain, test) <= 0.05
    assert F.svc_mia_efficacy(rng.normal(0.5, 0.1, (50, 1)), retain, test) >= 0.9


def test_logit_scaled_confidence_is_log_odds_of_the_true_class():
    rng = _rng(13)
    logits = torch.tensor(rng.normal(scale=3, size=(50, 6)))
    y = torch.tensor(rng.integers(0, 6, size=50))
    p = torch.softmax(logits, 1)[torch.arange(50), y].numpy()
    np.testing.assert_allclose(F.logit_scaled_confidence(logits, y).numpy(), np.log(p / (1 - p)), atol=1e-9)
    # stays finite where p_y rounds to 1 in float64
    big = F.logit_scaled_confidence(torch.tensor([[60.0, 0.0, 0.0]]), torch.tensor([0]))
    assert float(big[0]) == pytest.approx(60.0 - np.log(2.0))


def test_lira_scores_match_per_example_gaussian_likelihood_ratio():
    rng = _rng(14)
    n, s = 12, 16
    shadow = rng.normal(size=(n, s)) + np.arange(n)[:, None]
    in_mask = np.zeros((n, s), dtype=bool)
    for i in range(n):
        in_mask[i, rng.permutation(s)[: s // 2]] = True
    shadow[in_mask] += 2.0
    target = rng.normal(size=n) + np.arange(n)
    online = F.lira_scores(target, shadow, in_mask, fix_variance=False)
    offline = F.lira_scores(target, shadow, in_mask, online=False, fix_variance=False)
    for i in range(n):
        a, b = shadow[i][in_mask[i]], shadow[i][~in_mask[i]]
        expect = norm.logpdf(target[i], a.mean(), a.std()) - norm.logpdf(target[i], b.mean(), b.std())
        assert online[i] == pytest.approx(expect)
        assert offline[i] == pytest.approx(norm.logcdf(target[i], b.mean(), b.std()))
    # pooled (global) variance: one std of all residuals around each example's mean
    pooled = F.lira_scores(target, shadow, in_mask)
    res_in = np.concatenate([shadow[i][in_mask[i]] - shadow[i][in_mask[i]].mean() for i in range(n)])
    res_out = np.concatenate([shadow[i][~in_mask[i]] - shadow[i][~in_mask[i]].mean() for i in range(n)])
    i = 3
    expect = (norm.logpdf(target[i], shadow[i][in_mask[i]].mean(), res_in.std())
              - norm.logpdf(target[i], shadow[i][~in_mask[i]].mean(), res_out.std()))
    assert pooled[i] == pytest.approx(expect)


def test_lira_scores_need_in_and_out_shadows():
    with pytest.raises(InvalidInputError, match="IN and OUT"):
        F.lira_scores(np.zeros(2), np.zeros((2, 3)), np.zeros((2, 3), dtype=bool))


def test_linear_cka_matches_the_hsic_formula_and_its_invariances():
    rng = _rng(15)
    x = rng.normal(size=(60, 5))
    y = x @ rng.normal(size=(5, 7)) + 0.5 * rng.normal(size=(60, 7))
    h = np.eye(60) - np.ones((60, 60)) / 60
    k, l_ = x @ x.T, y @ y.T
    hsic = lambda a, b: np.trace(a @ h @ b @ h)  # noqa: E731
    assert F.linear_cka(x, y) == pytest.approx(hsic(k, l_) / np.sqrt(hsic(k, k) * hsic(l_, l_)))
    q, _ = np.linalg.qr(rng.normal(size=(5, 5)))
    assert F.linear_cka(x, 3.0 * x @ q + 1.0) == pytest.approx(1.0)


def test_avg_gap_closed_form():
    mine = {"forget_accuracy": 0.98, "retain_accuracy": 0.99, "test_accuracy": 0.90, "mia_efficacy": 0.10}
    ref = {"forget_accuracy": 0.90, "retain_accuracy": 1.00, "test_accuracy": 0.91, "mia_efficacy": 0.30}
    assert F.avg_gap(mine, ref) == pytest.approx((0.08 + 0.01 + 0.01 + 0.20) / 4)
    assert F.avg_gap(mine, ref, keys=["test_accuracy"]) == pytest.approx(0.01)
    with pytest.raises(InvalidInputError, match="mia_efficacy"):
        F.avg_gap({"forget_accuracy": 1.0}, ref, keys=["forget_accuracy", "mia_efficacy"])


def test_mean_loss_rejects_non_finite():
    assert F.mean_loss(torch.tensor([1.0, 2.0, 4.0])) == pytest.approx(7 / 3)
    with pytest.raises(NonFiniteError):
        F.mean_loss(torch.tensor([1.0, float("inf")]))


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 30), st.integers(2, 8), st.integers(0, 2**31 - 1), st.floats(0.1, 10.0))
def test_divergences_and_ece_stay_in_their_ranges(n, c, seed, scale):
    rng = _rng(seed)
    a, b = (torch.tensor(rng.normal(scale=scale, size=(n, c))) for _ in range(2))
    p, q = torch.softmax(a, 1), torch.softmax(b, 1)
    js = F.js_divergence(p, q)
    assert bool(((js >= -1e-12) & (js <= 1 + 1e-12)).all())
    torch.testing.assert_close(js, F.js_divergence(q, p))  # symmetric
    assert 0.0 <= F.zrf_score(a, b) <= 1.0 + 1e-12
    labels = torch.tensor(rng.integers(0, c, size=n))
    assert 0.0 <= F.expected_calibration_error(a, labels) <= 1.0


def _ssd_multinomial_members(retain, test, forget):
    """SSD's get_membership_attack_prob (if-loops/selective-synaptic-dampening src/metrics.py) written out:
    scikit-learn's old two-class multinomial logistic regression, ``sum_i w_i CE_i + ||W||^2 / 2`` over both
    classes' rows with balanced class weights, fit on all of retain (1) and all of test (0) by scipy."""
    from scipy.optimize import minimize

    x = np.concatenate([retain, test])
    y = np.concatenate([np.ones(retain.size), np.zeros(test.size)]).astype(int)
    sw = np.where(y == 1, y.size / (2 * retain.size), y.size / (2 * test.size))

    def objective(theta):
        z = np.stack([theta[0] * x + theta[2], theta[1] * x + theta[3]], 1)
        ce = np.logaddexp(z[:, 0], z[:, 1]) - z[np.arange(y.size), y]
        return (sw * ce).sum() + 0.5 * (theta[:2] ** 2).sum()

    w0, w1, b0, b1 = minimize(objective, np.zeros(4), method="BFGS", options={"gtol": 1e-10}).x
    return (w1 * forget + b1 > w0 * forget + b0).astype(float)


def test_entropy_mia_accuracy_is_ssd_attack_fit_on_all_of_retain_and_test():
    rng = _rng(15)
    retain, test = rng.normal(0.3, 0.4, 80), rng.normal(1.0, 0.4, 30)
    forget = np.linspace(0.3, 1.0, 41)  # straddles the attack's threshold
    got = F.entropy_mia(forget, test, retain)
    want = _ssd_multinomial_members(retain, test, forget)
    assert 0.0 < want.mean() < 1.0
    assert got["mia_accuracy"] == pytest.approx(want.mean())
