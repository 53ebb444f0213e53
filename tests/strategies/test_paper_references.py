"""Strategies against their papers' formulas and their official code's schedules, computed independently here
(float64 hand computations, brute force over samples, recorded batch sequences)."""

from __future__ import annotations

import copy

import erasus
import pytest
import torch
from erasus.strategies.base import reinitialize


def _perturbed(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` with every parameter moved far from any initialiser's range (a stand-in for training)."""
    with torch.no_grad():
        for i, p in enumerate(model.parameters()):
            p.add_(5.0 + i)
    return model


def test_reinitialize_leaves_no_trained_parameter_or_running_statistic():
    transformers = pytest.importorskip("transformers")
    cfg = transformers.ViTConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                                 image_size=8, patch_size=4, num_channels=1, num_labels=3)
    torch.manual_seed(0)
    models = {
        # a ViT keeps its position embedding and class token as bare nn.Parameters of ViTEmbeddings
        "vit": transformers.ViTForImageClassification(cfg),
        # MultiheadAttention's in_proj_weight is a bare parameter reset by _reset_parameters
        "encoder_layer": torch.nn.TransformerEncoderLayer(8, 2, 16, batch_first=True),
        "conv_bn": torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU()),
    }
    for name, model in models.items():
        trained = _perturbed(model)
        for m in trained.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.fill_(3.0)
                m.running_var.fill_(7.0)
                m.num_batches_tracked.fill_(11)
        saved = copy.deepcopy(trained.state_dict())
        fresh = reinitialize(trained, seed=0)
        for key, value in fresh.state_dict().items():
            if key.endswith("position_ids"):
                continue  # a constant index table, not learned
            assert not torch.equal(value, saved[key]), (name, key)
        for key, value in trained.state_dict().items():
            assert torch.equal(value, saved[key]), (name, key)  # the caller's model is untouched
        if name == "conv_bn":
            bn = fresh[1]
            assert torch.equal(bn.running_mean, torch.zeros(4)) and torch.equal(bn.running_var, torch.ones(4))
            assert int(bn.num_batches_tracked) == 0
        again = reinitialize(trained, seed=0)
        assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), again.state_dict().values()))


def test_reinitialize_refuses_a_parameter_it_cannot_reset():
    class WithBareParameter(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = torch.nn.Linear(4, 2)
            self.offset = torch.nn.Parameter(torch.zeros(2))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.linear(x) + self.offset

    model = _perturbed(WithBareParameter())
    saved = copy.deepcopy(model.state_dict())
    with pytest.raises(erasus.InvalidInputError, match="offset.*model_factory="):
        reinitialize(model, seed=0)
    assert all(torch.equal(v, saved[k]) for k, v in model.state_dict().items())
    # SISA without a model_factory would train its shard models from these weights: it refuses up front
    x, y = torch.randn(24, 4), torch.randint(0, 2, (24,))
    with pytest.raises(erasus.InvalidInputError, match="offset"):
        erasus.get_strategy("sisa", shards=2, slices=1, epochs_per_slice=1).fit(model=model, train_data=(x, y),
                                                                                progress=False)


def test_lf_ssd_importance_is_mean_abs_gradient_of_squared_output_norm(digits):
    """LF-SSD (Foster et al. 2024; MAS): I = sum_b n_b |grad mean_{i in b} ||f(x_i)||^2| / n, in float64 by hand."""
    alpha, lam, bs = 2.0, 0.9, 300
    strategy = erasus.get_strategy("lf_ssd", alpha=alpha, lam=lam)
    out = strategy.unlearn(model=digits.original, forget_data=digits.forget, retain_data=digits.retain,
                           batch_size=bs, progress=False)
    ref = copy.deepcopy(digits.original).double()
    params = list(ref.parameters())

    def importance(chunks):
        acc, n = [torch.zeros_like(p) for p in params], 0
        for x in chunks:
            sq_norm = ref(x.double()).pow(2).sum(1).mean()
            for a, g in zip(acc, torch.autograd.grad(sq_norm, params)):
                a += len(x) * g.abs()
            n += len(x)
        return [a / n for a in acc]

    retain_chunks = list(digits.x_retain.split(bs))
    forget_chunks = list(digits.x_forget.split(bs))
    i_d, i_f = importance(retain_chunks + forget_chunks), importance(forget_chunks)
    selected = 0
    for p_out, p0, d, f in zip(out.parameters(), params, i_d, i_f):
        sel = f > alpha * d
        expected = torch.where(sel, p0 * torch.clamp(lam * d / f, max=1.0), p0)
        clear = (f - alpha * d).abs() > 1e-3 * f.abs().clamp_min(1e-30)
        torch.testing.assert_close(p_out.double()[clear], expected[clear], rtol=1e-4, atol=1e-7)
        selected += int(sel[clear].sum())
    assert selected > 0 and strategy.info_["dampened"] >= selected
    # the squared-gradient importance of plain SSD ranks differently: it must not give the same model
    squared = erasus.get_strategy("ssd", alpha=alpha, lam=lam).unlearn(
        model=digits.original, forget_data=digits.forget, retain_data=digits.retain, batch_size=bs, progress=False
    )
    assert any(not torch.equal(a, b) for a, b in zip(out.parameters(), squared.parameters()))


@pytest.mark.parametrize("name", ["ssd", "lf_ssd"])
def test_ssd_warns_and_reports_zero_when_nothing_can_be_dampened(digits, name):
    # 125 forget samples among 625: alpha = 10 needs I_Df > 10 I_D >= 10 * (125 / 625) I_Df, impossible
    retain = (digits.x_retain[:500], digits.y_retain[:500])
    n_f = len(digits.y_forget)
    strategy = erasus.get_strategy(name)
    with pytest.warns(UserWarning, match=f"nothing dampened.*{n_f} of the {n_f + 500}"):
        out = strategy.unlearn(model=digits.original, forget_data=digits.forget, retain_data=retain, progress=False)
    assert strategy.info_["dampened"] == 0
    assert all(torch.equal(a, b) for a, b in zip(out.parameters(), digits.original.parameters()))
    # with coreset weights the bound does not apply, so the importances are computed and the count reported
    with pytest.warns(UserWarning, match=f"nothing dampened.*{n_f} of {n_f + 500}"):
        strategy.unlearn(model=digits.original, forget_data=digits.forget, retain_data=retain,
                         weights=torch.ones(n_f), alpha=1e4, progress=False)
    assert strategy.info_["dampened"] == 0


def _true_fisher_float64(model, x):
    """``F = mean_i sum_c p_c(x_i) (d log p_c(x_i) / d theta)^2``, one sample and one class at a time."""
    ref = copy.deepcopy(model).double()
    params = list(ref.parameters())
    fisher = [torch.zeros_like(p) for p in params]
    for i in range(len(x)):
        logp = torch.log_softmax(ref(x[i : i + 1].double()), dim=1)[0]
        for c in range(logp.shape[0]):
            for f, g in zip(fisher, torch.autograd.grad(logp[c], params, retain_graph=True)):
                f += logp[c].exp().detach() * g * g / len(x)
    return fisher


def test_fisher_forgetting_noise_std_is_the_authors_convention(digits):
    """Golatkar et al. 2020 code: std = sqrt(alpha * min(1 / (F + 1e-8), 1e3)), default alpha = 1e-6."""
    retain = (digits.x_retain[:40], digits.y_retain[:40])
    strategy = erasus.get_strategy("fisher_forgetting")
    assert strategy.options["alpha"] == 1e-6 and strategy.options["max_inverse"] == 1e3
    out = strategy.unlearn(model=digits.original, forget_data=digits.forget, retain_data=retain, progress=False)
    fisher = _true_fisher_float64(digits.original, retain[0])
    std = torch.cat([(1e-6 * (1.0 / (f + 1e-8)).clamp(max=1e3)).sqrt().reshape(-1) for f in fisher])
    delta = torch.cat([(a.detach().double() - b.detach().double()).reshape(-1) for a, b in zip(out.parameters(), digits.original.parameters())])
    z = delta / std
    # standardised noise is N(0, 1) overall and within each third of the entries sorted by their predicted std,
    # so both the clamp (largest std) and the Fisher-shaped part have the right scale
    assert abs(float(z.mean())) < 0.05 and abs(float(z.std()) - 1.0) < 0.04
    for part in z[std.argsort()].chunk(3):
        assert abs(float(part.std()) - 1.0) < 0.07
    assert float(std.max() / std.min()) > 5.0  # the test distinguishes shapes: the std varies across entries


class _Recorder(torch.nn.Module):
    """Wraps a model and records, for every training-mode forward, which dataset rows the batch held (-1 for an
    input that is no known sample, e.g. UNSIR's noise) and the inputs themselves."""

    def __init__(self, model: torch.nn.Module, rows: torch.Tensor, *, unknown_ok: bool = False) -> None:
        super().__init__()
        self.model = model
        self.rows = rows
        self.unknown_ok = unknown_ok
        self.batches: list[list[int]] = []
        self.inputs: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            match = (x[:, None, :] == self.rows[None, :, :]).all(-1)
            assert bool((match.sum(1) <= 1).all()) and (self.unknown_ok or bool(match.any(1).all()))
            self.batches.append(torch.where(match.any(1), match.float().argmax(1), -1).tolist())
            self.inputs.append(x.detach().clone())
        return self.model(x)


def _small_split(digits, n_forget=10, n_retain=30):
    xf, yf = digits.x_forget[:n_forget], digits.y_forget[:n_forget]
    xr, yr = digits.x_retain[:n_retain], digits.y_retain[:n_retain]
    return (xf, yf), (xr, yr), torch.cat([xf, xr])


@pytest.mark.parametrize("name", ["salun", "random_label"])
def test_random_label_schedule_is_a_full_forget_pass_then_a_full_retain_pass(digits, name):
    """OPTML-Group/Unlearn-Saliency RL.py: per epoch, every forget batch (random labels), then every retain batch."""
    forget, retain, rows = _small_split(digits)
    model = _Recorder(copy.deepcopy(digits.original), rows).eval()
    strategy = erasus.get_strategy(name)
    out = strategy.unlearn(model=model, forget_data=forget, retain_data=retain, epochs=2, batch_size=4,
                           inplace=True, progress=False)
    forget_ids, retain_ids = set(range(10)), set(range(10, 40))
    per_epoch = [3, 8]  # ceil(10 / 4) forget batches, ceil(30 / 4) retain batches
    assert len(out.batches) == 2 * sum(per_epoch) and len(strategy.history_) == 2 * sum(per_epoch)
    for epoch in range(2):
        start = epoch * sum(per_epoch)
        f_part = out.batches[start : start + per_epoch[0]]
        r_part = out.batches[start + per_epoch[0] : start + sum(per_epoch)]
        assert sorted(i for b in f_part for i in b) == sorted(forget_ids)
        assert sorted(i for b in r_part for i in b) == sorted(retain_ids)
    # without a retain set (or with alpha = 0) only the forget passes run; a step budget cuts the schedule
    model = _Recorder(copy.deepcopy(digits.original), rows).eval()
    out = strategy.unlearn(model=model, forget_data=forget, epochs=2, batch_size=4, inplace=True, progress=False)
    assert len(out.batches) == 6 and all(set(b) <= forget_ids for b in out.batches)
    model = _Recorder(copy.deepcopy(digits.original), rows).eval()
    out = strategy.unlearn(model=model, forget_data=forget, retain_data=retain, alpha=0.0, epochs=2, batch_size=4,
                           inplace=True, progress=False)
    assert len(out.batches) == 6 and all(set(b) <= forget_ids for b in out.batches)
    model = _Recorder(copy.deepcopy(digits.original), rows).eval()
    out = strategy.unlearn(model=model, forget_data=forget, retain_data=retain, steps=5, batch_size=4,
                           inplace=True, progress=False)
    assert [set(b) <= forget_ids for b in out.batches] == [True] * 3 + [False] * 2


def _reference_scrub_phases(epochs, msteps, f_batches, r_batches):
    """meghdadk/SCRUB large_scale_unlearning.ipynb: for epoch in 1..E: maximize if epoch <= msteps; minimize."""
    out = []
    for epoch in range(1, epochs + 1):
        if epoch <= msteps:
            out += ["max"] * f_batches
        out += ["min"] * r_batches
    return out


def _runs(seq):
    kinds, counts = [], []
    for k in seq:
        if kinds and kinds[-1] == k:
            counts[-1] += 1
        else:
            kinds.append(k)
            counts.append(1)
    return kinds, counts


def test_scrub_follows_the_reference_schedule_and_a_small_budget_keeps_its_min_steps(digits):
    forget, retain, rows = _small_split(digits)
    reference = _reference_scrub_phases(3, 2, 3, 8)  # ceil(10 / 4) forget, ceil(30 / 4) retain batches
    model = _Recorder(copy.deepcopy(digits.original), rows).eval()
    strategy = erasus.get_strategy("scrub")
    out = strategy.unlearn(model=model, forget_data=forget, retain_data=retain, batch_size=4, inplace=True,
                           progress=False)
    # one student forward per step (the KL and the CE of a min-step share it, as model_s(input) in the reference)
    seen = ["max" if set(b) <= set(range(10)) else "min" for b in out.batches]
    assert seen == reference and all(set(b) <= set(range(10, 40)) for b, k in zip(out.batches, seen) if k == "min")
    assert sorted(i for b in out.batches[:3] for i in b) == list(range(10))  # a max phase is one forget pass
    # a budget of 10 steps, below the 3 + 8 steps of one epoch: the phases (max 3, min 8, max 3, min 8, min 8)
    # shrink in proportion to (1, 2.7, 1, 2.7, 2.7) steps instead of 10 max-steps and no min-step
    model = _Recorder(copy.deepcopy(digits.original), rows).eval()
    out = strategy.unlearn(model=model, forget_data=forget, retain_data=retain, batch_size=4, steps=10,
                           inplace=True, progress=False)
    seen = ["max" if set(b) <= set(range(10)) else "min" for b in out.batches]
    kinds, counts = _runs(seen)
    assert len(seen) == 10 and kinds == ["max", "min", "max", "min"]
    for n, share in zip(counts, [1.0, 8 / 3, 1.0, 16 / 3]):
        assert abs(n - share) <= 1.0
    assert strategy.info_["max_steps"] == seen.count("max")
    # more steps than the schedule: extra epochs are min-only, as after msteps in the notebook
    schedule = erasus.strategies.scrub.scrub_schedule(epochs=3, msteps=2, forget_batches=3, retain_batches=8, steps=40)
    assert schedule[:30] == reference and schedule[30:] == ["min"] * 10


def test_bad_teacher_trains_one_epoch_over_forget_shuffled_with_30_percent_of_retain(digits):
    """vikram2000b/bad-teaching-unlearning: UnLearningData(forget, 30% retain), shuffled, KL to the mixed teacher."""
    forget, retain, rows = _small_split(digits)
    torch.manual_seed(7)
    incompetent = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
    model = _Recorder(copy.deepcopy(digits.original), rows).eval()
    strategy = erasus.get_strategy("bad_teacher", bad_teacher=incompetent)
    out = strategy.unlearn(model=model, forget_data=forget, retain_data=retain, batch_size=4, inplace=True,
                           progress=False)
    ids = [i for b in out.batches for i in b]
    assert len(out.batches) == 5 and len(strategy.history_) == 5  # ceil((10 + int(0.3 * 30)) / 4) steps
    assert sorted(i for i in ids if i < 10) == list(range(10))  # every forget sample once
    retain_seen = [i for i in ids if i >= 10]
    assert len(retain_seen) == len(set(retain_seen)) == 9 and strategy.info_["retain_used"] == 9
    assert any(min(b) < 10 <= max(b) for b in out.batches)  # shuffled together, not forget then retain
    # the first step's loss: KL(l_u T_s + (1 - l_u) T_d || S) over the batch, in float64 from the initial models
    first = torch.tensor(out.batches[0])
    x = rows[first].double()
    is_forget = (first < 10)[:, None]
    with torch.no_grad():
        teacher = torch.where(is_forget, torch.softmax(incompetent.double()(x), 1),
                              torch.softmax(copy.deepcopy(digits.original).double()(x), 1))
        log_s = torch.log_softmax(copy.deepcopy(digits.original).double()(x), 1)
    # the code's F.kl_div(log_s, teacher) with its default reduction: the mean over batch and classes
    reference = (teacher * (teacher.log() - log_s)).mean()
    assert strategy.history_[0] == pytest.approx(10 * float(reference), rel=1e-4)  # x C: sum over classes


def test_unsir_follows_the_reference_notebook(digits):
    """vikram2000b/Fast-Machine-Unlearning: noise by Adam(0.1) on -CE + 0.1 mean ||N||^2; impair: noise copies
    shuffled into the retain data, Adam lr 0.02; repair: retain only, a fresh Adam lr 0.01."""
    forget_class = 3  # not 0: the notebook's class_num = 0 labelling would be indistinguishable
    keep = digits.y_retain != forget_class
    xf, yf = digits.x_retain[~keep][:10], digits.y_retain[~keep][:10]
    xr, yr = digits.x_retain[keep][:30], digits.y_retain[keep][:30]
    rows, labels = torch.cat([xf, xr]), torch.cat([yf, yr])
    model = _Recorder(copy.deepcopy(digits.original), rows, unknown_ok=True).eval()
    opts = dict(noise_size=3, noise_repeats=2, noise_steps=5, batch_size=4, seed=0, progress=False)
    strategy = erasus.get_strategy("unsir")
    out = strategy.unlearn(model=model, forget_data=(xf, yf), retain_data=(xr, yr), inplace=True, **opts)

    # the noise: the notebook's loop in float64 from the same seeded randn start
    original = copy.deepcopy(digits.original).double().eval()
    noise = torch.randn((3, 64), generator=torch.Generator().manual_seed(0)).double().requires_grad_(True)
    opt = torch.optim.Adam([noise], lr=0.1)
    for _ in range(5):
        target = torch.full((3,), forget_class)
        loss = -torch.nn.functional.cross_entropy(original(noise), target) + 0.1 * noise.pow(2).sum(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    noise = noise.detach()

    impair = 9  # ceil((3 * 2 noise copies + 30 retain) / 4)
    assert len(out.batches) == impair + 8 and strategy.info_["impair_samples_per_epoch"] == 36
    seen = [i for b in out.batches[:impair] for i in b]
    assert sorted(i for i in seen if i >= 0) == list(range(10, 40)) and seen.count(-1) == 6  # no forget sample
    noise_rows = torch.cat([x[torch.tensor(b) < 0] for x, b in zip(out.inputs[:impair], out.batches[:impair])])
    for row in noise.float():
        assert int(torch.isclose(noise_rows, row, rtol=1e-4, atol=1e-5).all(1).sum()) == 2  # each copy twice
    assert sorted(i for b in out.batches[impair:] for i in b) == list(range(10, 40))  # repair: retain only

    # the first impair step (Adam lr 0.02) and a second run's first repair step (fresh Adam lr 0.01), by hand:
    # Adam's first update is lr * g / (|g| + eps)
    def grad(params, x, y):
        ref = copy.deepcopy(digits.original).double()
        with torch.no_grad():
            for p, v in zip(ref.parameters(), params):
                p.copy_(v)
        loss = torch.nn.functional.cross_entropy(ref(x.double()), y)
        return torch.autograd.grad(loss, list(ref.parameters()))

    model = _Recorder(copy.deepcopy(digits.original), rows, unknown_ok=True).eval()
    out = strategy.unlearn(model=model, forget_data=(xf, yf), retain_data=(xr, yr), inplace=True, steps=1, **opts)
    b0, b1 = (torch.tensor(b) for b in out.batches)
    y0 = torch.where(b0 < 0, forget_class, labels[b0.clamp(min=0)])  # noise is labelled with its class
    theta = [p.detach().double() for p in digits.original.parameters()]
    g0 = grad(theta, out.inputs[0], y0)
    theta1 = [t - 0.02 * g / (g.abs() + 1e-8) for t, g in zip(theta, g0)]
    g1 = grad(theta1, out.inputs[1], labels[b1])
    theta2 = [t - 0.01 * g / (g.abs() + 1e-8) for t, g in zip(theta1, g1)]
    for p, t, a, b in zip(out.model.parameters(), theta2, g0, g1):
        clear = (a.abs() > 1e-5) & (b.abs() > 1e-5)
        torch.testing.assert_close(p.detach().double()[clear], t[clear], rtol=0, atol=1e-5)
        assert float(clear.double().mean()) > 0.2


class _TokenMLP(torch.nn.Module):
    """A transformer-style block on (batch, tokens, features) inputs: up-projection, GELU, down-projection,
    mean over tokens, classifier head."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.up, self.down, self.head = torch.nn.Linear(8, 16), torch.nn.Linear(16, 8), torch.nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.down(torch.nn.functional.gelu(self.up(x))).mean(1))


class _Sequences(torch.utils.data.Dataset):
    def __init__(self, xs, ys):
        self.xs, self.ys = xs, ys

    def __len__(self):
        return len(self.xs)

    def __getitem__(self, i):
        return self.xs[i], self.ys[i]


def _sequences(n, shift, seed):
    g = torch.Generator().manual_seed(seed)
    xs = [torch.randn(int(torch.randint(2, 9, (1,), generator=g)), 8, generator=g) + shift for _ in range(n)]
    return _Sequences(xs, torch.randint(0, 3, (n,), generator=g).tolist())


def _brute_scores(hidden, data, weights=None):
    """mean |h| per unit over every token of every sample, samples weighted: sum_i w_i sum_t |h_it| / sum_i w_i T_i."""
    num, den = 0.0, 0.0
    for i in range(len(data)):
        h = hidden(data[i][0].double()).abs()
        w = 1.0 if weights is None else float(weights[i])
        num, den = num + w * h.reshape(-1, h.shape[-1]).sum(0), den + w * h.reshape(-1, h.shape[-1]).shape[0]
    return num / den


def test_neuron_pruning_scores_post_activation_features_of_token_sequences():
    """Pochinkov & Schoots 2024 (nickypro/selective-pruning sp.py): score = mean |post-GELU activation| over
    (samples x tokens) on D_f / (same on D_r + 1e-5), top fraction deleted; sequences of any length."""
    model = _TokenMLP().eval()
    forget, retain = _sequences(12, 0.7, seed=1), _sequences(30, 0.0, seed=2)
    w = torch.linspace(0.2, 2.0, 12)
    strategy = erasus.get_strategy("neuron_pruning", ratio=0.25, layers=["dow*"])
    out = strategy.unlearn(model=model, forget_data=forget, retain_data=retain, weights=w, batch_size=1,
                           progress=False)
    ref = copy.deepcopy(model).double()
    hidden = lambda x: torch.nn.functional.gelu(ref.up(x))  # noqa: E731 - what `down` reads
    score = _brute_scores(hidden, forget, w) / (_brute_scores(hidden, retain) + 1e-5)
    expected = sorted(torch.topk(score, 4).indices.tolist())  # int(0.25 * 16)
    assert strategy.info_["pruned_units"] == {"down": expected}
    # deleting a unit: the pruned model computes exactly the original with those activations set to 0
    x = forget[0][0][None]
    handle = model.down.register_forward_pre_hook(lambda _m, a: (a[0].index_fill(-1, torch.tensor(expected), 0.0),))
    with torch.no_grad():
        masked = model(x)
    handle.remove()
    torch.testing.assert_close(out(x), masked, rtol=1e-6, atol=1e-6)
    assert torch.equal(model.down.weight, _TokenMLP().down.weight)  # the caller's model is untouched


def test_neuron_pruning_on_conv_batchnorm_removes_channels_exactly():
    """A channel is scored after BatchNorm + ReLU (what the next conv reads) and deleted at that conv's input,
    so it contributes 0; zeroing conv1's filter instead would leave BatchNorm's shift."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
        torch.nn.Conv2d(4, 6, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
        torch.nn.Linear(6, 3),
    )
    with torch.no_grad():
        model[1].running_mean.uniform_(-0.3, 0.3)
        model[1].running_var.uniform_(0.5, 2.0)
        model[1].bias.uniform_(-0.5, 0.5)
    model.eval()
    g = torch.Generator().manual_seed(0)
    xf, xr = torch.randn(10, 1, 8, 8, generator=g) + 0.5, torch.randn(30, 1, 8, 8, generator=g)
    forget, retain = (xf, torch.zeros(10, dtype=torch.long)), (xr, torch.randint(0, 3, (30,), generator=g))
    strategy = erasus.get_strategy("neuron_pruning", ratio=0.3)
    out = strategy.unlearn(model=model, forget_data=forget, retain_data=retain, batch_size=4, progress=False)
    ref = copy.deepcopy(model).double()

    def unit_means(x):  # per channel / feature mean over samples and positions of what layers 3 and 7 read
        h1 = ref[2](ref[1](ref[0](x.double())))
        h2 = ref[6](ref[5](ref[4](ref[3](h1))))
        return torch.cat([h1.mean((0, 2, 3)), h2.mean(0)])

    score = unit_means(xf) / (unit_means(xr) + 1e-5)
    top = torch.topk(score, 3).indices  # int(0.3 * (4 + 6)), one ranking across both layers
    expected = {"3": sorted(i for i in top.tolist() if i < 4), "7": sorted(i - 4 for i in top.tolist() if i >= 4)}
    assert strategy.info_["pruned_units"] == {k: v for k, v in expected.items() if v}
    hooks = [model[int(k)].register_forward_pre_hook(
        lambda _m, a, idx=torch.tensor(v): (a[0].index_fill(1, idx, 0.0),)) for k, v in expected.items() if v]
    with torch.no_grad():
        masked = model(xf)
    for h in hooks:
        h.remove()
    torch.testing.assert_close(out(xf), masked, rtol=1e-5, atol=1e-6)
    with pytest.raises(erasus.InvalidInputError, match="names no module"):
        strategy.unlearn(model=model, forget_data=forget, retain_data=retain, layers=["missing.*"], progress=False)


class _Padded(torch.utils.data.Dataset):
    """Right-padded causal-LM samples: dicts of input_ids / attention_mask / labels, length 8."""

    def __init__(self, seqs):
        self.seqs = seqs

    def __len__(self):
        return len(self.seqs)

    def __getitem__(self, i):
        ids = torch.zeros(8, dtype=torch.long)
        mask = torch.zeros(8, dtype=torch.long)
        ids[: len(self.seqs[i])], mask[: len(self.seqs[i])] = torch.tensor(self.seqs[i]), 1
        return {"input_ids": ids, "attention_mask": mask, "labels": torch.where(mask.bool(), ids, -100)}


def test_neuron_pruning_on_gpt2_mlp_neurons_skips_padding_tokens():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(n_layer=2, n_embd=16, n_head=2, vocab_size=20, n_positions=8, resid_pdrop=0.0,
                                  embd_pdrop=0.0, attn_pdrop=0.0)
    model = transformers.GPT2LMHeadModel(cfg).eval()
    g = torch.Generator().manual_seed(0)
    seq = lambda lo, hi: torch.randint(lo, hi, (int(torch.randint(3, 9, (1,), generator=g)),), generator=g).tolist()  # noqa: E731
    forget, retain = _Padded([seq(10, 20) for _ in range(6)]), _Padded([seq(1, 10) for _ in range(10)])
    strategy = erasus.get_strategy("neuron_pruning", ratio=0.05, layers=["*.mlp.c_proj"])
    out = strategy.unlearn(model=model, forget_data=forget, retain_data=retain, batch_size=4, progress=False)

    ref = copy.deepcopy(model).double()
    names = [f"transformer.h.{i}.mlp.c_proj" for i in range(2)]

    def unit_means(data):  # each sample alone and unpadded: the post-GELU MLP activations of its real tokens
        sums, count = [0.0, 0.0], 0
        for i in range(len(data)):
            ids = data[i]["input_ids"][data[i]["attention_mask"].bool()][None]
            seen = []
            hooks = [ref.get_submodule(n).register_forward_pre_hook(lambda _m, a: seen.append(a[0][0])) for n in names]
            with torch.no_grad():
                ref(input_ids=ids)
            for h in hooks:
                h.remove()
            sums = [s + a.abs().sum(0) for s, a in zip(sums, seen)]
            count += ids.shape[1]
        return torch.cat([s / count for s in sums])

    score = unit_means(forget) / (unit_means(retain) + 1e-5)
    top = torch.topk(score, int(0.05 * 128)).indices.tolist()
    expected = {n: sorted(i - 64 * k for i in top if 64 * k <= i < 64 * (k + 1)) for k, n in enumerate(names)}
    assert strategy.info_["pruned_units"] == {n: v for n, v in expected.items() if v}
    for n, v in expected.items():  # transformers' Conv1D reads input unit j through weight row j
        w = out.get_submodule(n).weight
        assert torch.all(w[v] == 0) and bool((w.abs().sum(1) > 0).sum() == 64 - len(v))


def test_ssd_importance_streams_one_batch_at_a_time(digits):
    """SSD must not hold the training batches: each batch is consumed (its gradient taken) before the next is
    drawn, and the result equals the size-weighted mean of squared batch gradients computed in float64."""
    from erasus.strategies.ssd import importance

    model = copy.deepcopy(digits.original)
    state = {"drawn": 0, "used": 0}

    def batches():
        for x, y in zip(digits.x_retain[:250].split(64), digits.y_retain[:250].split(64)):
            assert state["used"] == state["drawn"], "a batch was drawn before the previous one was used"
            state["drawn"] += 1
            yield (x, y), None

    def objective(m, batch, w):
        state["used"] += 1
        return torch.nn.functional.cross_entropy(m(batch[0]), batch[1])

    got = importance(model, batches(), objective, batch_size=lambda b: len(b[1]))
    assert state == {"drawn": 4, "used": 4}
    ref = copy.deepcopy(model).double()
    expected = [torch.zeros_like(p) for p in ref.parameters()]
    for x, y in zip(digits.x_retain[:250].split(64), digits.y_retain[:250].split(64)):
        grads = torch.autograd.grad(torch.nn.functional.cross_entropy(ref(x.double()), y), list(ref.parameters()))
        for e, g in zip(expected, grads):
            e += len(y) * g * g / 250
    for a, b in zip(got, expected):
        torch.testing.assert_close(a.double(), b, rtol=1e-4, atol=1e-10)


def test_sisa_shard_models_start_from_no_trained_tensor_of_a_vit():
    """Bourtoule et al. 2021: a shard model must never have seen data outside its shard; a trained ViT passed as
    the architecture keeps its position embedding and class token (bare parameters) unless they are reset."""
    transformers = pytest.importorskip("transformers")
    cfg = transformers.ViTConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                                 image_size=8, patch_size=4, num_channels=1, num_labels=3)
    torch.manual_seed(0)
    trained = _perturbed(transformers.ViTForImageClassification(cfg))
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(8, 1, 8, 8, generator=g), torch.randint(0, 3, (8,), generator=g)
    ens = erasus.get_strategy("sisa", shards=2, slices=1, epochs_per_slice=1, batch_size=4).fit(
        model=trained, train_data=(x, y), progress=False)
    trained_state = trained.state_dict()
    for initial in ens.initial:
        for key, value in initial.items():
            if not key.endswith("position_ids"):
                assert not torch.equal(value, trained_state[key]), key


def test_unsir_weights_scale_free_and_a_zero_weight_class_gets_no_noise(digits):
    xf = torch.cat([digits.x_forget[:6], digits.x_retain[digits.y_retain == 4][:6]])
    yf = torch.cat([digits.y_forget[:6], digits.y_retain[digits.y_retain == 4][:6]])
    retain = (digits.x_retain[digits.y_retain != 4][:40], digits.y_retain[digits.y_retain != 4][:40])
    opts = dict(forget_data=(xf, yf), retain_data=retain, noise_size=4, noise_steps=3, batch_size=8, progress=False)
    strategy = erasus.get_strategy("unsir")
    plain = strategy.unlearn(model=digits.original, **opts)
    assert strategy.info_["noise_classes"] == [0, 4]
    doubled = strategy.unlearn(model=digits.original, weights=2 * torch.ones(12), **opts)
    for a, b in zip(plain.parameters(), doubled.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    strategy.unlearn(model=digits.original, weights=torch.tensor([1.0] * 6 + [0.0] * 6), **opts)
    assert strategy.info_["noise_classes"] == [0]
