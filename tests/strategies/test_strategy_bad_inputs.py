"""The strategy half of issue 20's sweep: out-of-range labels are refused before training with the label and
the model's class count, a failed in-place call restores gradients too, and every training loop refuses a
non-finite loss."""

from __future__ import annotations

import erasus
import pytest
import torch
from erasus.errors import InvalidInputError, NonFiniteError
from test_contract import FAST, _Boom, _exploding_task_after, _identical, _params


class _Calls(torch.nn.Module):
    """Counts forwards in train mode: a refusal "before training" must come before the first one."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.train_forwards = inner, 0

    def forward(self, x):
        self.train_forwards += int(self.training)
        return self.inner(x)


def _bad(digits, label=10):
    y = digits.y_forget.clone()
    y[3] = label
    return digits.x_forget, y


@pytest.mark.parametrize("name", sorted(FAST))
@pytest.mark.parametrize("label", [10, -1])
def test_out_of_range_labels_are_refused_before_training(digits, name, label):
    model = _Calls(digits.model())
    saved = _params(model)
    with pytest.raises(InvalidInputError, match=rf"label {label} in the forget set is out of range for a model "
                                                r"with 10 classes \(expected 0\.\.9\)"):
        erasus.get_strategy(name).unlearn(model=model, forget_data=_bad(digits, label), retain_data=digits.retain,
                                          progress=False, **FAST[name])
    assert model.train_forwards == 0 and _identical(model, saved)


def test_out_of_range_retain_labels_are_refused_too(digits):
    y = digits.y_retain.clone()
    y[0] = 12
    with pytest.raises(InvalidInputError, match="label 12 in the retain set .* 10 classes"):
        erasus.get_strategy("grad_diff").unlearn(model=digits.model(), forget_data=digits.forget,
                                                 retain_data=(digits.x_retain, y), steps=2, progress=False)


class _Opaque(torch.utils.data.Dataset):
    """A dataset whose labels cannot be read without loading items: the per-batch check must catch it."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


@pytest.mark.parametrize("name", ["gradient_ascent", "grad_diff", "neg_grad_plus", "salun", "ssd"])
def test_out_of_range_labels_in_an_opaque_dataset_get_the_same_error(digits, name):
    model = digits.model()
    saved = _params(model)
    with pytest.raises(InvalidInputError, match="label 10 is out of range for a model with 10 classes"):
        erasus.get_strategy(name).unlearn(model=model, forget_data=_Opaque(*_bad(digits)), retain_data=digits.retain,
                                          progress=False, inplace=True, **FAST[name])
    assert _identical(model, saved)


@pytest.mark.parametrize("name", ["gradient_ascent", "grad_diff", "scrub", "salun", "l1_sparse", "ssd"])
def test_failed_inplace_call_restores_gradients(digits, name):
    model = digits.model()
    params = list(model.parameters())
    params[0].grad = torch.full_like(params[0], 0.25)  # a gradient the caller had accumulated; others None
    saved = _params(model)
    with pytest.raises(_Boom):  # the loss fails after a few batches have been backpropagated
        erasus.get_strategy(name, task=_exploding_task_after(3)).unlearn(
            model=model, forget_data=digits.forget, retain_data=digits.retain, steps=10, batch_size=32,
            inplace=True, progress=False)
    assert _identical(model, saved)
    assert torch.equal(params[0].grad, torch.full_like(params[0], 0.25))
    assert all(p.grad is None for p in params[1:])


def test_sisa_uses_the_per_call_lr_and_refuses_a_diverging_loss(digits):
    x = torch.cat([digits.x_forget, digits.x_retain])[:200]
    y = torch.cat([digits.y_forget, digits.y_retain])[:200]
    train = torch.utils.data.TensorDataset(x, y)
    sisa = erasus.get_strategy("sisa", shards=2, slices=2, epochs_per_slice=1, lr=0.05)
    ens = sisa.fit(model=digits.model(), train_data=train, progress=False)
    out = sisa.unlearn(model=ens, forget_data=erasus.data.subset(train, [0, 1]), lr=0.0, progress=False)
    # with the per-call lr=0 a retrained shard stays at the checkpoint it restarted from (lr=0.05 would move it)
    restarted = sisa.info_["restarted_from_slice"]
    assert restarted
    for s, r in restarted.items():
        expected = ens.initial[s] if r == 0 else ens.checkpoints[s][r - 1]
        for key, value in out.models[s].state_dict().items():
            assert torch.equal(value.cpu(), expected[key]), (s, key)
    with pytest.raises(NonFiniteError, match="sisa: the slice .* loss became"):
        sisa.unlearn(model=ens, forget_data=erasus.data.subset(train, [0, 1]), lr=1e30, progress=False)
