"""Method-specific checks against independent references: SSD vs float64, certified removal vs an exact
retrained logistic model and a numpy Corollary-1 bound, SISA's shard-local retraining, the Fisher vs a per-sample loop, amnesiac subtraction."""

from __future__ import annotations

import copy

import erasus
import numpy as np
import pytest
import torch
from erasus.data import subset
from erasus.strategies.amnesiac import AmnesiacRecorder
from erasus.strategies.certified_removal import CertifiedBudgetExceededError, CertifiedLogistic
from scipy.optimize import minimize
from threadpoolctl import threadpool_limits


def test_ssd_matches_float64_reference(digits):
    alpha, lam = 2.0, 0.8
    out = erasus.get_strategy("ssd", alpha=alpha, lam=lam).unlearn(
        model=digits.original, forget_data=digits.forget, retain_data=digits.retain, batch_size=4096, progress=False
    )
    ref = copy.deepcopy(digits.original).double()
    params = list(ref.parameters())

    def sq_grad(x, y):
        loss = torch.nn.functional.cross_entropy(ref(x.double()), y)
        return [g * g for g in torch.autograd.grad(loss, params)]

    # one batch each: I_D is the size-weighted mean over the retain batch and the forget batch
    g_r, g_f = sq_grad(*digits.retain), sq_grad(*digits.forget)
    n_r, n_f = len(digits.y_retain), len(digits.y_forget)
    selected_total = 0
    for p_out, p0, gr, gf in zip(out.parameters(), params, g_r, g_f):
        i_d = (n_r * gr + n_f * gf) / (n_r + n_f)
        sel = gf > alpha * i_d
        expected = torch.where(sel, p0 * torch.clamp(lam * i_d / gf, max=1.0), p0)
        # entries far from the selection threshold must agree with the float64 reference
        clear = ((gf - alpha * i_d).abs() > 1e-3 * gf.abs().clamp_min(1e-30))
        torch.testing.assert_close(p_out.double()[clear], expected[clear], rtol=1e-4, atol=1e-7)
        untouched = ~sel & clear
        assert torch.equal(p_out.detach()[untouched], p0.detach().float()[untouched])
        selected_total += int(sel.sum())
    assert selected_total > 0


def _logistic_reference(x, y, c, lam, noise):
    """Exact minimiser of the perturbed one-vs-rest objective with scipy (float64, exact trust region)."""
    with threadpool_limits(1):  # tiny matrices: BLAS threads only contend
        return _solve_reference(x, y, c, lam, noise)


def _solve_reference(x, y, c, lam, noise):
    n = x.shape[0]
    xa = np.hstack([x, np.ones((n, 1))])
    ws = []
    for k in range(c):
        s = np.where(y == k, 1.0, -1.0)

        def f(w, s=s, b=noise[k]):
            z = s * (xa @ w)
            val = np.logaddexp(0, -z).sum() + 0.5 * lam * n * w @ w + b @ w
            grad = xa.T @ (-s / (1 + np.exp(z))) + lam * n * w + b
            return val, grad

        def hess(w):
            p = 1 / (1 + np.exp(-(xa @ w)))
            return (xa * (p * (1 - p))[:, None]).T @ xa + lam * n * np.eye(xa.shape[1])

        res = minimize(f, np.zeros(xa.shape[1]), jac=True, hess=hess, method="trust-exact", options={"gtol": 1e-10})
        ws.append(res.x)
    return np.stack(ws)


def _corollary1_reference(w, x_f, y_f, x_r, y_r, lam):
    """Guo et al. 2020 Corollary 1 in numpy float64, as facebookresearch/certified-removal test_removal.py
    computes it per one-vs-rest class (spectral norm of X', H^{-1} Delta, X' H^{-1} Delta), plus the exact
    per-class residual of the perturbed objective after the step. Returns (beta_c, w_new)."""
    xa_f = np.hstack([x_f, np.ones((len(x_f), 1))])
    xa_r = np.hstack([x_r, np.ones((len(x_r), 1))])
    n_r, c = len(x_r), w.shape[0]
    spec = np.linalg.norm(xa_r, 2)
    betas, w_new = [], w.copy()
    for k in range(c):
        s_f = np.where(y_f == k, 1.0, -1.0)
        grad = xa_f.T @ (-s_f / (1 + np.exp(s_f * (xa_f @ w[k])))) + len(x_f) * lam * w[k]
        p = 1 / (1 + np.exp(-(xa_r @ w[k])))
        hess = (xa_r * (p * (1 - p))[:, None]).T @ xa_r + lam * n_r * np.eye(xa_r.shape[1])
        step = np.linalg.solve(hess, grad)
        betas.append(0.25 * spec * np.linalg.norm(step) * np.linalg.norm(xa_r @ step))
        w_new[k] = w[k] + step
    return np.array(betas), w_new


def _residuals(w, x, y, lam, noise):
    """Per-class gradient of the perturbed objective sum_i log(1+exp(-s w^T x)) + lam n/2 ||w||^2 + b^T w."""
    xa = np.hstack([x, np.ones((len(x), 1))])
    out = []
    for k in range(w.shape[0]):
        s = np.where(y == k, 1.0, -1.0)
        out.append(np.linalg.norm(xa.T @ (-s / (1 + np.exp(s * (xa @ w[k])))) + lam * len(x) * w[k] + noise[k]))
    return np.array(out)


def _certified_setup(digits):
    x = torch.cat([digits.x_forget, digits.x_retain])[::3].double()
    x = (x / x.norm(dim=1, keepdim=True)).float()
    y = torch.cat([digits.y_forget, digits.y_retain])[::3]
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(1))
    return x, y, perm[:5], perm[5:]


def test_certified_removal_matches_exact_retrain_within_its_joint_bound(digits):
    x, y, f, r = _certified_setup(digits)
    strategy = erasus.get_strategy("certified_removal", lam=5e-2, sigma=3.0, epsilon=1.0, delta=1e-4)
    head = strategy.fit((x, y), seed=0)
    assert isinstance(head, CertifiedLogistic)
    lam, noise = head.lam, head.noise.numpy()
    w_star = _logistic_reference(x.double().numpy(), y.numpy(), 10, lam, noise)
    np.testing.assert_allclose(head.weight.numpy(), w_star, atol=1e-5)

    saved = head.weight.clone()
    new = strategy.unlearn(model=head, forget_data=(x[f], y[f]), retain_data=(x[r], y[r]), progress=False)
    assert torch.equal(head.weight, saved)  # the caller's head is untouched
    info = strategy.info_
    xf, yf, xr, yr = x[f].double().numpy(), y[f].numpy(), x[r].double().numpy(), y[r].numpy()
    betas, w_step = _corollary1_reference(head.weight.numpy(), xf, yf, xr, yr, lam)
    # the joint bound is the sum over classes (the reference code's grad_norm_approx), not the max
    np.testing.assert_allclose(info["residual_bound"], betas.sum(), rtol=1e-6)
    assert info["residual_bound"] > 3 * betas.max()
    np.testing.assert_allclose(new.weight.numpy(), w_step, atol=1e-10)
    per_class = _residuals(new.weight.numpy(), xr, yr, lam, noise)
    np.testing.assert_allclose(info["residual_exact"], np.sqrt((per_class**2).sum()), rtol=1e-6)
    assert info["residual_exact"] <= info["residual_bound"]
    fit_residual = np.sqrt((_residuals(head.weight.numpy(), x.double().numpy(), y.numpy(), lam, noise) ** 2).sum())
    np.testing.assert_allclose(info["residual_spent"], fit_residual + betas.sum(), rtol=1e-6)
    np.testing.assert_allclose(info["budget_left"], head.budget - info["residual_spent"], rtol=1e-9)
    np.testing.assert_allclose(head.budget, 3.0 / np.sqrt(2 * np.log(1.5 / 1e-4)), rtol=1e-12)

    w_retrained = _logistic_reference(xr, yr, 10, lam, noise)
    n_new = len(r)
    # lam*n'-strong convexity of the joint objective: ||W^- - W'||_F <= ||grad L(W^-; D')||_F / (lam n')
    dist = np.linalg.norm(new.weight.numpy() - w_retrained)
    assert dist <= info["residual_exact"] / (lam * n_new) + 1e-9
    assert dist < np.linalg.norm(saved.numpy() - w_retrained)  # closer than before removal
    assert new.n_train == n_new and int(new.removals_served) == 5


def test_certified_removal_charges_the_joint_residual_not_the_largest_class(digits):
    """Guo et al.'s Gaussian mechanism perturbs all C x d parameters at once: a budget between the largest
    per-class bound and their sum must refuse the removal (a per-class check would certify it)."""
    x, y, f, r = _certified_setup(digits)
    sigma, delta, lam = 3.0, 1e-4, 5e-2
    probe = erasus.get_strategy("certified_removal", lam=lam, sigma=sigma, delta=delta).fit((x, y), seed=0)
    betas, _ = _corollary1_reference(probe.weight.numpy(), x[f].double().numpy(), y[f].numpy(),
                                     x[r].double().numpy(), y[r].numpy(), lam)
    c = np.sqrt(2 * np.log(1.5 / delta))
    between = (betas.max() + betas.sum()) / 2
    tight = erasus.get_strategy("certified_removal", lam=lam, sigma=sigma, delta=delta, epsilon=between * c / sigma)
    head = tight.fit((x, y), seed=0)  # the same noise and weights: epsilon only sets the budget
    assert betas.max() < head.budget < betas.sum()
    with pytest.raises(CertifiedBudgetExceededError, match="joint gradient-residual norm"):
        tight.unlearn(model=head, forget_data=(x[f], y[f]), retain_data=(x[r], y[r]), progress=False)
    roomy = erasus.get_strategy("certified_removal", lam=lam, sigma=sigma, delta=delta,
                                epsilon=1.1 * betas.sum() * c / sigma)
    roomy.unlearn(model=roomy.fit((x, y), seed=0), forget_data=(x[f], y[f]), retain_data=(x[r], y[r]), progress=False)
    assert roomy.info_["budget_left"] > 0


def test_certified_removal_refuses_past_the_budget(digits):
    x = torch.cat([digits.x_forget, digits.x_retain])
    x = x / x.norm(dim=1, keepdim=True)
    y = torch.cat([digits.y_forget, digits.y_retain])
    strategy = erasus.get_strategy("certified_removal", lam=1e-3, sigma=0.1)
    head = strategy.fit((x, y))
    saved, spent = head.weight.clone(), float(head.residual_spent)
    with pytest.raises(CertifiedBudgetExceededError, match="above the certified budget"):
        strategy.unlearn(model=head, forget_data=(x[:50], y[:50]), retain_data=(x[50:], y[50:]), inplace=True)
    assert torch.equal(head.weight, saved) and float(head.residual_spent) == spent and int(head.removals_served) == 0
    with pytest.raises(erasus.InvalidInputError, match="should leave"):
        strategy.unlearn(model=head, forget_data=(x[:5], y[:5]), retain_data=(x[10:], y[10:]))


def test_sisa_retrains_only_the_shards_holding_forget_samples(digits, mlp_factory):
    x = torch.cat([digits.x_forget, digits.x_retain])
    y = torch.cat([digits.y_forget, digits.y_retain])
    sisa = erasus.get_strategy("sisa", shards=4, slices=3, epochs_per_slice=4)
    ens = sisa.fit(model=mlp_factory(), train_data=(x, y), progress=False)
    acc = float((ens(digits.x_test).argmax(1) == digits.y_test).float().mean())
    assert acc > 0.7
    forget_ids = np.concatenate([ens.slices[1][2][:3], ens.slices[3][1][:2]])
    new = sisa.unlearn(model=ens, forget_data=subset(ens.train_data, forget_ids), progress=False)
    assert sisa.info_["retrained_shards"] == [1, 3]
    assert sisa.info_["restarted_from_slice"] == {1: 2, 3: 1}
    for k in range(4):
        same = all(torch.equal(a, b) for a, b in zip(ens.models[k].parameters(), new.models[k].parameters()))
        assert same == (k in (0, 2))
    kept = {int(i) for s in new.slices for sl in s for i in sl}
    assert kept.isdisjoint(forget_ids.tolist()) and len(kept) == len(x) - len(forget_ids)
    # checkpoints before the first affected slice are reused untouched
    assert all(torch.equal(a, b) for a, b in zip(ens.checkpoints[3][0].values(), new.checkpoints[3][0].values()))
    # exactness: shard 3 equals training its reduced slices from the slice-0 checkpoint with the same seeds
    ref = mlp_factory()
    ref.load_state_dict(ens.checkpoints[3][0])
    sisa._train_slices(ref, erasus.tasks.ClassificationTask(), ens.train_data, new.slices[3], 1, [], ens.seed * 1000 + 3)
    assert all(torch.equal(a, b) for a, b in zip(ref.parameters(), new.models[3].parameters()))
    with pytest.raises(erasus.InvalidInputError, match="forget_ids"):
        sisa.unlearn(model=ens, forget_data=(x[:3], y[:3]))


def test_true_fisher_matches_per_sample_loop(digits):
    from erasus.strategies.base import Run
    from erasus.strategies.fisher_forgetting import diagonal_fisher
    from erasus.tasks import ClassificationTask

    model = copy.deepcopy(digits.original)
    xr, yr = digits.x_retain[:40], digits.y_retain[:40]
    run = Run(task=ClassificationTask(), forget=digits.forget, retain=(xr, yr), weights=None, steps=None, epochs=None,
              lr=0.0, device=torch.device("cpu"), seed=0, progress=False, batch_size=16, optimizer="sgd", momentum=0.0,
              weight_decay=0.0, original=model, strategy_name="fisher_forgetting")
    got = diagonal_fisher(model, run, kind="true")
    ref = copy.deepcopy(model).double()
    params = list(ref.parameters())
    expected = [torch.zeros_like(p) for p in params]
    for i in range(len(xr)):
        logp = torch.log_softmax(ref(xr[i : i + 1].double()), dim=1)[0]
        for c in range(10):
            g = torch.autograd.grad(logp[c], params, retain_graph=True)
            for e, gi in zip(expected, g):
                e += logp[c].exp().detach() * gi * gi / len(xr)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a.double(), b, rtol=1e-3, atol=1e-9)


def test_amnesiac_exact_subtracts_the_recorded_updates_of_forget_batches(digits, mlp_factory):
    x, y = digits.x_retain[:200], digits.y_retain[:200]
    model = mlp_factory(1)
    theta0 = [p.detach().clone() for p in model.parameters()]
    rec = AmnesiacRecorder(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    batches = [np.arange(i, i + 20) for i in range(0, 200, 20)]
    own_deltas = []
    for ids in batches:
        before = [p.detach().clone() for p in model.parameters()]
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x[ids]), y[ids]).backward()
        with rec.step(ids):
            opt.step()
        own_deltas.append([p.detach() - b for p, b in zip(model.parameters(), before)])
    forget_ids = np.array([3, 47, 48])  # in batches 0 and 2
    out = erasus.get_strategy("amnesiac").unlearn(
        model=model, forget_data=(x[forget_ids], y[forget_ids]), forget_ids=forget_ids, updates=rec, progress=False
    )
    assert erasus.get_strategy("amnesiac").options["mode"] == "auto"
    expected = [t0 + sum(own_deltas[b][j] for b in range(10) if b not in (0, 2)) for j, t0 in enumerate(theta0)]
    for p, e in zip(out.parameters(), expected):
        torch.testing.assert_close(p, e, rtol=1e-5, atol=1e-6)


def test_dp_finetune_reports_epsilon_within_target(digits):
    pytest.importorskip("opacus")
    s = erasus.get_strategy("dp_finetune", target_epsilon=2.0, target_delta=1e-5)
    s.unlearn(model=digits.original, forget_data=digits.forget, retain_data=digits.retain, epochs=1, progress=False)
    assert 0 < s.info_["epsilon_spent"] <= 2.0 + 1e-6
    assert s.info_["noise_multiplier"] > 0


def test_dp_finetune_refuses_batchnorm_with_a_clear_error():
    pytest.importorskip("opacus")
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.Linear(8, 2))
    saved = [t.clone() for t in model.state_dict().values()]
    data = (torch.randn(16, 4), torch.randint(0, 2, (16,)))
    with pytest.raises(erasus.InvalidInputError, match="BatchNorm"):
        erasus.get_strategy("dp_finetune").unlearn(model=model, forget_data=data, retain_data=data, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), saved))


def test_wrong_labels_are_uniform_over_the_other_classes():
    from erasus.strategies.base import random_labels

    y = torch.arange(10).repeat(2000)
    g = torch.Generator().manual_seed(0)
    wrong = random_labels(y, 10, exclude_true=True, generator=g)
    assert not torch.any(wrong == y)
    counts = torch.bincount((wrong - y) % 10, minlength=10)[1:].double()
    assert counts.min() > 0.85 * counts.mean()  # 9 offsets, ~2222 each


def test_boundary_shrink_neighbour_labels_match_a_manual_fgsm(digits):
    s = erasus.get_strategy("boundary_shrink", epsilon=0.1)
    s.unlearn(model=digits.original, forget_data=digits.forget, steps=1, progress=False)
    model = copy.deepcopy(digits.original)
    x = digits.x_forget.clone().requires_grad_(True)
    loss = torch.nn.functional.cross_entropy(model(x), digits.y_forget, reduction="sum")
    (gx,) = torch.autograd.grad(loss, x)
    with torch.no_grad():
        logits = model(digits.x_forget + 0.1 * gx.sign())
    logits[torch.arange(len(logits)), digits.y_forget] = -float("inf")
    assert torch.equal(s.info_["neighbour_labels"], logits.argmax(1))


def test_ssd_with_a_precomputed_full_importance_matches_float64_on_a_coreset(digits):
    """I_D computed once on the whole training set (retain + all of the forget set), I_Df on a coreset: the
    dampened weights are the float64 formula's, and a malformed I_D is refused with the model untouched."""
    alpha, lam = 1.5, 0.8
    ref = copy.deepcopy(digits.original).double()
    params = list(ref.parameters())

    def sq_grad(x, y):
        loss = torch.nn.functional.cross_entropy(ref(x.double()), y)
        return [g * g for g in torch.autograd.grad(loss, params)]

    xf, yf = digits.forget
    core = (xf[::5], yf[::5])  # a fifth of the forget set
    g_r, g_f, g_c = sq_grad(*digits.retain), sq_grad(xf, yf), sq_grad(*core)
    n_r, n_f = len(digits.y_retain), len(digits.y_forget)
    i_d = [(n_r * gr + n_f * gf) / (n_r + n_f) for gr, gf in zip(g_r, g_f)]
    before = copy.deepcopy(digits.original.state_dict())
    out = erasus.get_strategy("ssd", alpha=alpha, lam=lam).unlearn(
        model=digits.original, forget_data=core, retain_data=digits.retain, batch_size=4096, progress=False,
        full_importance=[t.float() for t in i_d])
    selected_total = 0
    for p_out, p0, d, c in zip(out.parameters(), params, i_d, g_c):
        sel = c > alpha * d
        expected = torch.where(sel, p0 * torch.clamp(lam * d / c, max=1.0), p0)
        clear = (c - alpha * d).abs() > 1e-3 * c.abs().clamp_min(1e-30)
        # float32 gradients of a 1/5 coreset: looser than the float64 formula's own rounding, far tighter than a
        # dampening factor (which moves weights by orders of magnitude more)
        torch.testing.assert_close(p_out.double()[clear], expected[clear], rtol=2e-3, atol=1e-6)
        selected_total += int(sel.sum())
    assert selected_total > 0
    bad = [t.float() for t in i_d][:-1]
    with pytest.raises(erasus.errors.InvalidInputError, match="full_importance holds"):
        erasus.get_strategy("ssd").unlearn(model=digits.original, forget_data=core, retain_data=digits.retain,
                                           progress=False, full_importance=bad)
    with pytest.raises(erasus.errors.InvalidInputError, match=r"full_importance\[2\] has shape \(64, 10\), parameter 2 has \(10, 64\)"):
        erasus.get_strategy("ssd").unlearn(model=digits.original, forget_data=core, retain_data=digits.retain,
                                           progress=False, full_importance=[t.float().T for t in i_d])
    for k, v in digits.original.state_dict().items():
        assert torch.equal(v, before[k])
