"""The strategy contract: the caller's model is untouched (also on failure), weights act as a weighted loss,
LoRA adapters merge back, bad input gets a clear error."""

from __future__ import annotations

import copy

import erasus
import numpy as np
import pytest
import torch
from erasus.errors import ErasusTypeError, InvalidInputError, NonFiniteError, RegistryError


def _params(model):
    return [p.detach().clone() for p in model.state_dict().values()]


def _identical(model, saved):
    return all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), saved))


FAST = {
    "gradient_ascent": dict(steps=3, lr=1e-3),
    "grad_diff": dict(steps=3, lr=1e-3),
    "neg_grad_plus": dict(steps=3, lr=1e-3),
    "scrub": dict(steps=4, lr=1e-3),
    "salun": dict(steps=3),
    "random_label": dict(steps=3),
    "amnesiac": dict(steps=3),
    "l1_sparse": dict(steps=3),
    "bad_teacher": dict(steps=3),
    "boundary_shrink": dict(steps=3, lr=1e-2),
    "unsir": dict(steps=2, noise_steps=2),
    "finetune": dict(steps=3),
    "ssd": dict(alpha=2.0),
    "lf_ssd": dict(alpha=2.0),
    "neuron_pruning": dict(ratio=0.1),
    "fisher_forgetting": dict(fisher="empirical", alpha=1e-6),
    "retrain": dict(steps=3),
}


@pytest.mark.parametrize("name", sorted(FAST))
def test_inplace_false_leaves_input_bit_identical_and_returns_the_trained_copy(digits, name):
    model = digits.model()
    saved = _params(model)
    kw = dict(forget_data=digits.forget, retain_data=digits.retain, progress=False, **FAST[name])
    out = erasus.get_strategy(name).unlearn(model=model, **kw)
    assert out is not model
    assert _identical(model, saved)
    # reference: the same call training the model itself (inplace=True on a fresh copy); the copy returned
    # above must be exactly that trained model, and training must have moved it
    trained = erasus.get_strategy(name).unlearn(model=digits.model(), inplace=True, **kw)
    for key, a, b in zip(out.state_dict(), out.state_dict().values(), trained.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=f"{name}: {key} differs from the in-place run")
    moved = [k for k, a, b in zip(out.state_dict(), out.state_dict().values(), saved) if not torch.equal(a, b)]
    assert moved, f"{name} left every parameter where it was"


def test_returned_copy_is_one_hand_computed_gradient_ascent_step(digits):
    """Independent reference: plain SGD (no momentum) on one full forget batch is
    ``theta + lr * grad mean CE(forget)``, computed here with torch.autograd on the caller's weights."""
    model = digits.model()
    lr = 1e-2
    out = erasus.get_strategy("gradient_ascent").unlearn(
        model=model, forget_data=digits.forget, steps=1, lr=lr, momentum=0.0, batch_size=len(digits.x_forget),
        progress=False)
    loss = torch.nn.functional.cross_entropy(model(digits.x_forget), digits.y_forget)
    grads = torch.autograd.grad(loss, list(model.parameters()))
    for (name, p), g, q in zip(model.named_parameters(), grads, out.parameters()):
        torch.testing.assert_close(q, p.detach() + lr * g, rtol=1e-5, atol=1e-7, msg=name)


class _Boom(RuntimeError):
    pass


def _exploding_task_after(n_calls):
    from erasus.tasks import ClassificationTask

    class Exploding(ClassificationTask):
        calls = 0

        def per_sample_loss(self, model, batch):
            Exploding.calls += 1
            if Exploding.calls > n_calls:
                raise _Boom("injected failure")
            return super().per_sample_loss(model, batch)

    return Exploding()


@pytest.mark.parametrize("inplace", [False, True])
@pytest.mark.parametrize("name", ["gradient_ascent", "scrub", "salun", "ssd"])
def test_failure_mid_run_leaves_callers_model_untouched(digits, name, inplace):
    model = digits.model()
    saved = _params(model)
    with pytest.raises(_Boom):
        erasus.get_strategy(name, task=_exploding_task_after(3)).unlearn(
            model=model, forget_data=digits.forget, retain_data=digits.retain, progress=False, inplace=inplace,
            steps=10, batch_size=32,
        )
    assert _identical(model, saved)
    assert all(p.requires_grad for p in model.parameters())


def test_inplace_true_modifies_and_returns_the_same_model(digits):
    model = digits.model()
    saved = _params(model)
    out = erasus.get_strategy("gradient_ascent").unlearn(
        model=model, forget_data=digits.forget, steps=3, lr=1e-3, inplace=True, progress=False
    )
    assert out is model and not _identical(model, saved)


def test_diverging_loss_raises_and_restores(digits):
    model = digits.model()
    saved = _params(model)
    with pytest.raises(NonFiniteError, match="lower lr"):
        erasus.get_strategy("gradient_ascent").unlearn(
            model=model, forget_data=digits.forget, steps=50, lr=1e6, inplace=True, progress=False, momentum=0.0
        )
    assert _identical(model, saved)


# Deterministic given the data: every forget sample sits in one full batch, so shuffling does not matter.
# SSD's importances are batch-level squared gradients, so it runs with batch_size=1 (per-sample importances),
# and a weight-0 forget sample is still training data (it stays in D): its subset twin moves it to the retain set.
WEIGHTED = {
    "gradient_ascent": dict(steps=3, lr=1e-3),
    "grad_diff": dict(steps=3, lr=1e-3),
    "neg_grad_plus": dict(steps=3, lr=1e-2),
    "scrub": dict(steps=6, lr=1e-2, msteps=3),
    "bad_teacher": dict(steps=3, lr=1e-3),
    "boundary_shrink": dict(steps=3, lr=1e-2),
    "ssd": dict(alpha=2.0, batch_size=1),
    "lf_ssd": dict(alpha=2.0, batch_size=1),
    "neuron_pruning": dict(ratio=0.1),
}


def _assert_same(m1, m2, rtol, atol):
    for a, b in zip(m1.state_dict().values(), m2.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=rtol, atol=atol)


@pytest.mark.parametrize("name", sorted(WEIGHTED) + ["salun", "random_label"])
def test_uniform_weights_equal_unweighted(digits, name):
    n = len(digits.y_forget)
    opts = {"retain_data": digits.retain, "progress": False, "batch_size": 1024, "seed": 3}
    opts.update(WEIGHTED.get(name, dict(steps=2)))
    if name in ("ssd", "lf_ssd"):
        opts["batch_size"] = 256
    strategy = erasus.get_strategy(name)
    plain = strategy.unlearn(model=digits.original, forget_data=digits.forget, **opts)
    doubled = strategy.unlearn(model=digits.original, forget_data=digits.forget, weights=2 * torch.ones(n), **opts)
    _assert_same(plain, doubled, 1e-5, 1e-6)


@pytest.mark.parametrize("name", sorted(WEIGHTED))
def test_zero_weight_removes_a_samples_influence(digits, name):
    n = len(digits.y_forget)
    opts = {"progress": False, "batch_size": 1024, "seed": 3}
    opts.update(WEIGHTED[name])
    strategy = erasus.get_strategy(name)
    rng = np.random.default_rng(0)
    w = rng.uniform(0.5, 2.0, n).astype(np.float32)
    w[rng.choice(n, n // 3, replace=False)] = 0.0
    keep = torch.from_numpy(w > 0)
    retain_for_subset = digits.retain
    if name in ("ssd", "lf_ssd"):
        retain_for_subset = (
            torch.cat([digits.x_retain, digits.x_forget[~keep]]),
            torch.cat([digits.y_retain, digits.y_forget[~keep]]),
        )
    zeroed = strategy.unlearn(model=digits.original, forget_data=digits.forget, retain_data=digits.retain, weights=w, **opts)
    on_subset = strategy.unlearn(
        model=digits.original,
        forget_data=(digits.x_forget[keep], digits.y_forget[keep]),
        retain_data=retain_for_subset,
        weights=w[w > 0],
        **opts,
    )
    _assert_same(zeroed, on_subset, 1e-4, 1e-5)
    plain = strategy.unlearn(model=digits.original, forget_data=digits.forget, retain_data=digits.retain, **opts)
    assert any(not torch.allclose(a, b) for a, b in zip(zeroed.state_dict().values(), plain.state_dict().values()))


def test_weighted_gradient_ascent_matches_hand_written_weighted_step(digits):
    n = len(digits.y_forget)
    w = torch.linspace(0.1, 3.0, n)
    out = erasus.get_strategy("gradient_ascent").unlearn(
        model=digits.original, forget_data=digits.forget, weights=w, steps=1, lr=0.1, momentum=0.0,
        batch_size=1024, progress=False,
    )
    ref = copy.deepcopy(digits.original).double()
    losses = torch.nn.functional.cross_entropy(ref(digits.x_forget.double()), digits.y_forget, reduction="none")
    loss = -(w.double() * losses).sum() / w.double().sum()
    grads = torch.autograd.grad(loss, list(ref.parameters()))
    for p, p0, g in zip(out.parameters(), digits.original.parameters(), grads):
        torch.testing.assert_close(p.double(), p0.double() - 0.1 * g, rtol=1e-4, atol=1e-6)


def test_lora_trains_low_rank_adapters_and_merges_them(digits):
    pytest.importorskip("peft")
    out = erasus.get_strategy("gradient_ascent").unlearn(
        model=digits.original, forget_data=digits.forget, steps=5, lr=1e-2, progress=False,
        lora={"r": 2, "lora_alpha": 4, "init_lora_weights": "gaussian"},
    )
    assert isinstance(out, torch.nn.Sequential)
    assert not any("lora" in name for name, _ in out.named_parameters())
    for i in (0, 2):
        delta = out[i].weight.detach() - digits.original[i].weight.detach()
        assert delta.abs().max() > 0
        assert torch.linalg.matrix_rank(delta.double(), atol=1e-6) <= 2
        torch.testing.assert_close(out[i].bias, digits.original[i].bias)  # LoRA leaves biases alone


def test_lora_on_non_gradient_method_is_refused(digits):
    with pytest.raises(InvalidInputError, match="gradient-based"):
        erasus.get_strategy("ssd").unlearn(
            model=digits.original, forget_data=digits.forget, retain_data=digits.retain, lora={"r": 2}
        )


def test_seed_reproducible(digits):
    s = erasus.get_strategy("random_label")
    a = s.unlearn(model=digits.original, forget_data=digits.forget, steps=3, seed=5, progress=False)
    b = s.unlearn(model=digits.original, forget_data=digits.forget, steps=3, seed=5, progress=False)
    c = s.unlearn(model=digits.original, forget_data=digits.forget, steps=3, seed=6, progress=False)
    assert _identical(a, _params(b)) and not _identical(a, _params(c))
    assert len(s.history_) == 3


def test_accepts_loaders_and_uses_their_batch_size(digits):
    from erasus.data import as_loader

    s = erasus.get_strategy("gradient_ascent")
    s.unlearn(model=digits.original, forget_loader=as_loader(digits.forget, batch_size=16), epochs=1, progress=False)
    assert len(s.history_) == -(-len(digits.y_forget) // 16)


def test_bad_input_gets_clear_errors(digits):
    ga = erasus.get_strategy("gradient_ascent")
    kw = dict(model=digits.original, forget_data=digits.forget, progress=False)
    with pytest.raises(InvalidInputError, match="unknown option"):
        erasus.get_strategy("gradient_ascent", alhpa=1)
    with pytest.raises(InvalidInputError, match="weights has 3 entries"):
        ga.unlearn(weights=torch.ones(3), **kw)
    with pytest.raises(InvalidInputError, match="non-negative"):
        ga.unlearn(weights=-torch.ones(len(digits.y_forget)), **kw)
    with pytest.raises(NonFiniteError):
        ga.unlearn(weights=torch.full((len(digits.y_forget),), float("nan")), **kw)
    with pytest.raises(InvalidInputError, match="steps"):
        ga.unlearn(steps=0, **kw)
    with pytest.raises(InvalidInputError, match="either forget_loader= or forget_data="):
        ga.unlearn(model=digits.original, forget_data=digits.forget, forget_loader=digits.forget)
    with pytest.raises(InvalidInputError, match="needs the retain set"):
        erasus.get_strategy("scrub").unlearn(**kw)
    with pytest.raises(ErasusTypeError, match="nn.Module"):
        ga.unlearn(model="resnet", forget_data=digits.forget)
    with pytest.raises(RegistryError, match="unknown strategy"):
        erasus.get_strategy("forget_everything")


def test_lora_inplace_failure_unloads_adapters_and_restores(digits):
    pytest.importorskip("peft")
    model = digits.model()
    saved = _params(model)
    with pytest.raises(_Boom):
        erasus.get_strategy("gradient_ascent", task=_exploding_task_after(2)).unlearn(
            model=model, forget_data=digits.forget, steps=5, lr=1e-2, inplace=True, progress=False,
            lora={"r": 2, "init_lora_weights": "gaussian"},
        )
    assert _identical(model, saved)
    assert [n for n, _ in model.named_modules()] == ["", "0", "1", "2"]
