"""The bad-input sweep of issue 20, as tests: every registered selector refuses non-finite, complex and
overflowing features (and bad labels) with a specific erasus error, before any work, leaving the input as it was."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import erasus
from erasus.errors import ErasusError, ErasusTypeError, InvalidInputError, NonFiniteError

N, D = 30, 5
LABELS = np.arange(N) % 3


def clean_features(name: str) -> np.ndarray:
    rng = np.random.default_rng(0)
    if name == "min_k":  # token log-probabilities
        return -rng.uniform(0.1, 5.0, size=(N, D)).astype(np.float32)
    if name == "forgetting_events":  # a correctness history
        return (rng.uniform(size=(N, D)) > 0.5).astype(np.float32)
    return rng.normal(size=(N, D)).astype(np.float32)


def make(name: str):
    opts = {"selectors": ["kcenter", "herding"]} if name == "voting" else {}
    return erasus.get_selector(name, seed=0, **opts)


def run(name: str, x, labels=LABELS):
    return make(name).select(4, features=x, labels=labels)


SELECTORS = erasus.list_selectors()
NAN_IS_MEANINGFUL = {"min_k", "forgetting_events"}


@pytest.mark.parametrize("name", SELECTORS)
def test_clean_input_is_accepted(name):
    sel = run(name, clean_features(name))
    want = N if name == "full" else 4  # full keeps every row whatever k asks
    assert len(sel) == want and len(set(sel.indices.tolist())) == want


@pytest.mark.parametrize("name", SELECTORS)
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_non_finite_features_are_refused_naming_the_cell(name, value, kind):
    if np.isnan(value) and name in NAN_IS_MEANINGFUL:
        pytest.skip("NaN marks an unscored position for this selector")
    x = clean_features(name)
    x[3, 2] = value
    arg = torch.from_numpy(x.copy()) if kind == "torch" else x
    before = x.copy()
    with pytest.raises(NonFiniteError, match=r"non-finite value \((NaN|\+inf|-inf)\) at row 3, column 2"):
        run(name, arg)
    np.testing.assert_array_equal(arg.numpy() if kind == "torch" else arg, before)


@pytest.mark.parametrize("name", SELECTORS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_overflowing_magnitudes_are_refused_naming_the_magnitude(name, dtype):
    scale = 1e20 if dtype == np.float32 else 1e300  # 1e300 would silently become inf in float32
    x = clean_features(name).astype(dtype) * scale
    with pytest.raises(InvalidInputError, match=r"reach \|x\| = .*e\+(20|300).*rescale"):
        run(name, x)


def test_the_overflow_bound_is_where_float32_distances_overflow():
    # the bound is sharp: just below it the largest squared distance is finite in float32, just above it is not
    d = 8
    bound = erasus.selection.magnitude_limit(d)
    for m, finite in ((bound * 0.999, True), (bound * 1.001, False)):
        a = np.full(d, m, dtype=np.float32)
        with np.errstate(over="ignore"):
            dist = np.sum((a - (-a)) ** 2, dtype=np.float32)
        assert np.isfinite(dist) == finite
    ok = np.zeros((4, d), dtype=np.float32)
    ok[0] = bound * 0.99
    erasus.select(ok, 2, method="kcenter")
    ok[0] = bound * 1.01
    with pytest.raises(InvalidInputError, match="rescale"):
        erasus.select(ok, 2, method="kcenter")


@pytest.mark.parametrize("name", SELECTORS)
@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_complex_features_are_refused_not_truncated(name, kind):
    x = clean_features(name).astype(np.complex64) + 1j
    arg = torch.from_numpy(x) if kind == "torch" else x
    with pytest.raises(ErasusTypeError, match="complex"):
        run(name, arg)


@pytest.mark.parametrize("name", SELECTORS)
def test_bad_labels_are_refused(name):
    x = clean_features(name)
    bad = LABELS.astype(np.float64)
    bad[5] = np.nan
    with pytest.raises(NonFiniteError, match="labels contain a non-finite value .* at index 5"):
        run(name, x, labels=bad)
    with pytest.raises(InvalidInputError, match=rf"labels must have shape \({N},\)"):
        run(name, x, labels=LABELS[:-1])
    with pytest.raises(InvalidInputError, match="non-negative"):
        run(name, x, labels=LABELS - 1)


def test_every_refusal_is_an_erasus_error():
    # one catch-all a user can rely on: the errors above are ErasusError subclasses and builtin ValueError/TypeError
    for cls in (NonFiniteError, InvalidInputError):
        assert issubclass(cls, ErasusError) and issubclass(cls, ValueError)
    assert issubclass(ErasusTypeError, TypeError)
