"""Each strategy moves forget accuracy toward the retrained model's (0 on the forgotten class) while keeping
retain accuracy within a stated margin of the original model's (digits, tiny MLP, small step budgets)."""

from __future__ import annotations

import erasus
import pytest

# name -> (options for unlearn, max forget accuracy after, max retain-accuracy drop). An empty dict runs the
# method's paper defaults; where those cannot act on this 64-unit MLP and 125-sample forget set, the comment
# says what the defaults measure and why the budget differs.
CASES = {
    "gradient_ascent": (dict(steps=30, lr=1e-3, optimizer="adam"), 0.3, 0.10),
    "grad_diff": (dict(steps=30, lr=1e-3, optimizer="adam"), 0.5, 0.05),
    "neg_grad_plus": (dict(steps=40, lr=3e-3, optimizer="adam", beta=0.9), 0.2, 0.10),
    "finetune": (dict(steps=300, lr=0.3), 0.8, 0.02),
    # SCRUB's large-scale defaults (lr 5e-4 SGD, alpha 1e-3) and its small-scale notebook setting both leave
    # forget accuracy at 1.0 here: 2 max-steps per epoch against 18 min-steps; a larger Adam lr is needed
    "scrub": (dict(epochs=4, lr=3e-3, optimizer="adam", alpha=0.5, gamma=1.0, msteps=3), 0.5, 0.02),
    "l1_sparse": (dict(steps=300, lr=0.1, gamma=1e-3), 0.7, 0.02),
    # SSD's paper alpha = 10 cannot select anything here: the forget class is 10% of D and I_D >= (n_f / n) I_Df,
    # so I_Df > 10 I_D is impossible (test_paper_references checks the warning); alpha is scaled to the share
    "ssd": (dict(alpha=2.0, lam=1.0), 0.75, 0.02),
    "lf_ssd": (dict(alpha=2.0, lam=1.0), 0.2, 0.15),
    # the default 3% of 64 hidden units is 1 unit (forget accuracy stays 1.0); the paper prunes LLM layers
    # with thousands of neurons
    "neuron_pruning": (dict(ratio=0.2), 0.2, 0.10),
    "mask_based": (dict(ratio=0.2), 0.2, 0.10),
    "unsir": (dict(), 0.1, 0.06),
    # the paper's one epoch at Adam lr 1e-4 is 8 steps here (forget accuracy stays 1.0); its CIFAR epoch is ~60
    "bad_teacher": (dict(epochs=5, lr=1e-3), 0.3, 0.08),
    "boundary_shrink": (dict(steps=30, lr=1e-2), 0.1, 0.08),
    "amnesiac": (dict(steps=30, lr=1e-2), 0.1, 0.05),
    "random_label": (dict(), 0.25, 0.05),
    "salun": (dict(), 0.25, 0.05),
    "retrain": (dict(epochs=20, lr=0.05), 0.1, 0.02),
    "dp_finetune": (dict(epochs=4, lr=0.5, target_epsilon=8.0), 0.3, 0.08),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_strategy_moves_forget_accuracy_toward_retrained(digits, name):
    if name == "dp_finetune":
        pytest.importorskip("opacus")
    options, max_forget, max_retain_drop = CASES[name]
    before = digits.accs(digits.original)
    target = digits.accs(digits.retrained)
    assert before["forget"] == 1.0 and target["forget"] == 0.0
    strategy = erasus.get_strategy(name)
    model = strategy.unlearn(
        model=digits.original, forget_data=digits.forget, retain_data=digits.retain, progress=False, seed=0, **options
    )
    after = digits.accs(model)
    assert after["forget"] <= max_forget, (name, after)
    assert abs(after["forget"] - target["forget"]) < abs(before["forget"] - target["forget"])
    assert after["retain"] >= before["retain"] - max_retain_drop, (name, after)


def test_fisher_forgetting_hurts_forget_more_than_retain(digits):
    # Fisher noise is not class-selective by construction (it follows the retain Fisher), so the claim is
    # relative: the forgotten class loses clearly more accuracy than the retained classes. The authors' default
    # alpha = 1e-6 (std <= 0.03 after the 1e3 clamp) leaves this MLP's predictions unchanged; 1e-4 is 10x the
    # largest alpha of their sweep (1e-8 .. 1e-5).
    before = digits.accs(digits.original)
    model = erasus.get_strategy("fisher_forgetting", alpha=1e-4, fisher="empirical").unlearn(
        model=digits.original, forget_data=digits.forget, retain_data=digits.retain, progress=False
    )
    after = digits.accs(model)
    assert (before["forget"] - after["forget"]) > (before["retain"] - after["retain"]) + 0.2, after


def test_every_listed_method_is_registered():
    expected = {
        "retrain", "finetune", "gradient_ascent", "grad_diff", "neg_grad_plus", "scrub", "fisher_forgetting", "ssd",
        "lf_ssd", "salun", "random_label", "amnesiac", "l1_sparse", "bad_teacher", "boundary_shrink", "unsir",
        "mask_based", "neuron_pruning", "certified_removal", "sisa", "dp_finetune",
    }
    assert expected <= set(erasus.list_strategies())
    for name in expected:
        doc = erasus.registry.STRATEGIES.factory(name).__doc__
        assert doc and any(ch.isdigit() for ch in doc), f"{name} docstring must name its paper (with year)"
