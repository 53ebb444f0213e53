"""Certificates as a user meets them: issued by certified_removal, saved beside the model, reloaded, tampered
with and verified; the secret perturbation stays secret; noise is unpredictable unless seeded."""

from __future__ import annotations

import dataclasses
import json

import erasus
import numpy as np
import pytest
import torch
from erasus.certification import (
    Certificate,
    CertificateMismatchError,
    hash_data,
    hash_model,
    verify_certified_removal,
)
from erasus.strategies.certified_removal import CertifiedLogistic
from sklearn.datasets import load_digits


@pytest.fixture(scope="module")
def data():
    d = load_digits()
    x = torch.tensor(d.data[::3], dtype=torch.float32)
    x = x / x.norm(dim=1, keepdim=True)
    y = torch.tensor(d.target[::3])
    return x, y


@pytest.fixture(scope="module")
def issued(data):
    x, y = data
    cr = erasus.get_strategy("certified_removal", lam=5e-2, sigma=3.0)
    head = cr.fit((x, y), seed=0)
    new = cr.unlearn(model=head, forget_data=(x[:5], y[:5]), retain_data=(x[5:], y[5:]), progress=False)
    return cr, head, new


def _class_residuals(head, x, y):
    """Per-class ||grad|| of the perturbed one-vs-rest objective, numpy float64 (independent of erasus)."""
    w, b = head.weight.numpy(), head.noise.numpy()
    xa = np.hstack([x.double().numpy(), np.ones((len(x), 1))])
    out = []
    for k in range(w.shape[0]):
        s = np.where(y.numpy() == k, 1.0, -1.0)
        out.append(np.linalg.norm(xa.T @ (-s / (1 + np.exp(s * (xa @ w[k])))) + head.lam * len(x) * w[k] + b[k]))
    return np.array(out)


def test_issued_certificate_round_trips_and_verifies(issued, data):
    x, y = data
    cr, _, new = issued
    cert = cr.certificate_
    assert new.certificate is cert
    assert Certificate.from_json(cert.to_json()) == cert
    assert json.loads(cert.to_json())["budget_left"] == pytest.approx(cert.budget - cert.bound_value)
    assert cert.removals == 5 and cert.mechanism == "guo2020_newton_gaussian"
    assert cert.bound_value == pytest.approx(cr.info_["residual_spent"])
    assert cert.budget == pytest.approx(3.0 / np.sqrt(2 * np.log(1.5 / 1e-4)))
    assert verify_certified_removal(new, cert, (x[5:], y[5:])) is True


def test_verification_fails_when_the_joint_residual_exceeds_the_budget(issued, data):
    """A budget between the largest per-class residual and the joint one must fail (a per-class check passes)."""
    x, y = data
    cr, _, new = issued
    cert = cr.certificate_
    per_class = _class_residuals(new, x[5:], y[5:])
    joint = np.sqrt((per_class**2).sum())
    c = np.sqrt(2 * np.log(1.5 / cert.delta))
    budget = joint * 0.9
    assert per_class.max() < budget
    squeezed = dataclasses.replace(cert, budget=budget, epsilon=budget * c / 3.0, bound_value=0.0)
    assert verify_certified_removal(new, squeezed, (x[5:], y[5:])) is False
    roomy = dataclasses.replace(cert, budget=joint * 1.1, epsilon=joint * 1.1 * c / 3.0, bound_value=0.0)
    assert verify_certified_removal(new, roomy, (x[5:], y[5:])) is True
    # the accumulated bound the certificate records is also held to the budget
    over = dataclasses.replace(roomy, bound_value=joint * 1.2)
    assert verify_certified_removal(new, over, (x[5:], y[5:])) is False


def test_changed_weights_or_other_data_are_refused(issued, data):
    x, y = data
    cr, _, new = issued
    cert = cr.certificate_
    tampered = CertifiedLogistic(new.weight.clone(), new.noise, lam=new.lam, n_train=new.n_train, budget=new.budget,
                                 epsilon=new.epsilon, delta=new.delta, sigma=new.sigma)
    tampered.load_state_dict(new.state_dict())
    assert verify_certified_removal(tampered, cert, (x[5:], y[5:]))  # an exact copy verifies
    with torch.no_grad():
        tampered.weight[3, 7] += 1e-6
    with pytest.raises(CertificateMismatchError, match="weights changed"):
        verify_certified_removal(tampered, cert, (x[5:], y[5:]))
    with pytest.raises(CertificateMismatchError, match="not the data"):
        verify_certified_removal(new, cert, (x[4:], y[4:]))
    with pytest.raises(CertificateMismatchError, match="not the data"):
        verify_certified_removal(new, cert, (x[5:].flip(0), y[5:].flip(0)))


def test_hashes_are_independent_of_batching_and_see_every_byte(data):
    x, y = data
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=7)
    assert hash_data((x, y)) == hash_data(loader) == hash_data(torch.utils.data.TensorDataset(x, y))
    y2 = y.clone()
    y2[-1] = (y2[-1] + 1) % 10
    assert hash_data((x, y2)) != hash_data((x, y))
    records = [{"input_ids": torch.tensor([1, 2, i]), "text": f"t{i}"} for i in range(5)]
    assert hash_data(records) == hash_data(list(records)) != hash_data(records[:4] + [{**records[4], "text": "x"}])
    m = torch.nn.Linear(3, 2)
    h = hash_model(m)
    with torch.no_grad():
        m.bias[0] = torch.nextafter(m.bias[0], torch.tensor(10.0))
    assert hash_model(m) != h


def test_save_writes_the_certificate_beside_the_model_and_never_the_noise(issued, data, tmp_path):
    from safetensors.torch import load_file

    x, y = data
    cr = erasus.get_strategy("certified_removal", lam=5e-2, sigma=3.0)
    head = cr.fit((x, y), seed=0)
    unlearner = erasus.ErasusUnlearner(head, strategy=cr, selector="full")
    new = unlearner.fit((x[:5], y[:5]), (x[5:], y[5:]), progress=False)
    out = unlearner.save(tmp_path / "run")
    saved = erasus.ErasusUnlearner.load_certificate(out)
    assert saved == new.certificate
    stored = load_file(str(out / "model.safetensors"))
    assert set(stored) == {"weight", "residual_spent", "removals_served"}
    raw = (out / "model.safetensors").read_bytes()
    assert head.noise.numpy().tobytes()[:64] not in raw  # no stretch of b's bytes is on disk
    blank = CertifiedLogistic(torch.zeros_like(head.weight), torch.zeros(1), lam=head.lam, n_train=0, budget=head.budget,
                              epsilon=head.epsilon, delta=head.delta, sigma=head.sigma)
    loaded = erasus.ErasusUnlearner.load_weights(blank, out)
    loaded.noise = None  # what a reloaded head has: the secret is not on disk
    with pytest.raises(erasus.InvalidInputError, match="secret perturbation"):
        verify_certified_removal(loaded, saved, (x[5:], y[5:]))
    assert verify_certified_removal(loaded, saved, (x[5:], y[5:]), noise=head.noise) is True


def test_perturbation_comes_from_os_entropy_unless_seeded(data):
    x, y = data
    cr = erasus.get_strategy("certified_removal", lam=5e-2)
    a, b = cr.fit((x, y)), cr.fit((x, y))
    assert not torch.equal(a.noise, b.noise)
    assert torch.equal(cr.fit((x, y), seed=4).noise, cr.fit((x, y), seed=4).noise)
    assert "explicit seed" in cr.fit((x, y), seed=4).certificate.statement
    assert "noise" not in a.state_dict()
    with pytest.raises(erasus.InvalidInputError, match="seed must be an int"):
        cr.fit((x, y), seed=1.5)


def test_bad_certificates_get_clear_errors(issued):
    cert = issued[0].certificate_
    with pytest.raises(erasus.InvalidInputError, match="JSON"):
        Certificate.from_json("{not json")
    with pytest.raises(erasus.InvalidInputError, match="missing keys"):
        Certificate.from_dict({k: v for k, v in cert.to_dict().items() if k != "model_hash"})
    with pytest.raises(erasus.InvalidInputError, match="SHA-256"):
        dataclasses.replace(cert, data_hash="abc")
    with pytest.raises(erasus.InvalidInputError, match="finite"):
        dataclasses.replace(cert, epsilon=float("nan"))
