"""erasus.select for the Rust geometric selectors: input kinds, determinism, threads and errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import erasus
from erasus import _core
from erasus.errors import ErasusTypeError, InvalidInputError, NonFiniteError

METHODS = {"kcenter": {"initial": [0]}, "herding": {}, "kmeans": {"max_iter": 5}}


@pytest.fixture(scope="module")
def x() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(600, 12)).astype(np.float32)


def run(x: object, method: str, k: int = 20, **extra: object) -> erasus.Selection:
    return erasus.select(x, k, method=method, seed=3, **{**METHODS[method], **extra})


@pytest.mark.parametrize("method", METHODS)
def test_dtype_stride_memmap_and_torch_inputs_agree(x: np.ndarray, method: str, tmp_path) -> None:
    expected = run(x, method)
    wide = np.zeros((600, 24), dtype=np.float32)
    wide[:, ::2] = x
    mm = np.memmap(tmp_path / "x.f32", dtype=np.float32, mode="w+", shape=x.shape)
    mm[:] = x
    mm.flush()
    readonly = np.memmap(tmp_path / "x.f32", dtype=np.float32, mode="r", shape=x.shape)
    variants = [
        x.astype(np.float64),
        np.asfortranarray(x),
        wide[:, ::2],
        readonly,
        torch.from_numpy(x.copy()),
        torch.from_numpy(x.astype(np.float64)),
        torch.from_numpy(np.ascontiguousarray(x.T)).T,
    ]
    for v in variants:
        got = run(v, method)
        assert got.indices.dtype == np.int64 and got.weights.dtype == np.float32
        assert got.indices.tolist() == expected.indices.tolist(), type(v)
        assert got.objective == pytest.approx(expected.objective)


@pytest.mark.parametrize("method", METHODS)
def test_same_output_on_one_and_two_threads(method: str) -> None:
    # n * d above the core's parallel threshold (2**18 elements), so the threads really split the work.
    x = np.random.default_rng(1).normal(size=(22_000, 12)).astype(np.float32)
    try:
        erasus.set_num_threads(1)
        one = run(x, method, k=40)
        erasus.set_num_threads(2)
        two = run(x, method, k=40)
    finally:
        erasus.set_num_threads(0)
    assert one.indices.tolist() == two.indices.tolist()
    assert one.weights.tolist() == two.weights.tolist()
    assert one.objective == two.objective
    if one.gains is not None:
        assert one.gains.tolist() == two.gains.tolist()


@pytest.mark.parametrize("method", [*METHODS, "random"])
def test_deterministic_per_seed(x: np.ndarray, method: str) -> None:
    a = erasus.select(x, 15, method=method, seed=11)
    b = erasus.get_selector(method, seed=11).select(15, features=x)
    assert a.indices.tolist() == b.indices.tolist()


@pytest.mark.parametrize("method", METHODS)
def test_bad_input_is_refused_and_left_untouched(x: np.ndarray, method: str) -> None:
    bad = x.copy()
    bad[7, 3] = np.nan
    snapshot = bad.copy()
    with pytest.raises(NonFiniteError, match="row 7, column 3"):
        run(bad, method)
    np.testing.assert_array_equal(bad, snapshot)
    bad[7, 3] = np.inf
    with pytest.raises(ValueError, match="non-finite"):
        run(bad, method)
    for k in (0, -1, 601):
        with pytest.raises(InvalidInputError, match="k"):
            run(x, method, k=k)
    with pytest.raises(ErasusTypeError, match="integer"):
        run(x, method, k=2.0)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="empty"):
        run(np.zeros((0, 4), dtype=np.float32), method)
    with pytest.raises(InvalidInputError, match="2-D"):
        run(x[0], method)
    with pytest.raises(InvalidInputError, match="2-D"):
        run(x[None], method)
    with pytest.raises(ErasusTypeError):
        run(x.astype(np.complex64), method)


def test_core_refuses_non_contiguous_arrays(x: np.ndarray) -> None:
    with pytest.raises(InvalidInputError, match="C-contiguous"):
        _core.kcenter(x[:, ::2], 3)
    with pytest.raises(InvalidInputError, match="negative"):
        _core.kcenter(x, 3, initial=np.array([-2]))
    with pytest.raises(InvalidInputError, match="seed"):
        erasus.select(x, 3, method="kcenter", seed=-1)


def test_every_geometric_selector_is_registered() -> None:
    assert {"kcenter", "herding", "kmeans", "random", "full"} <= set(erasus.list_selectors())


def test_core_bindings_refuse_fortran_order_instead_of_reading_it_transposed():
    from erasus import _core

    x = np.asfortranarray(np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32))
    for fn in (_core.kcenter, _core.herding, _core.facility_location):
        with pytest.raises(erasus.InvalidInputError, match="C-contiguous"):
            fn(x, 3)
    # the public API converts it once and gets the same answer as for C order
    np.testing.assert_array_equal(erasus.select(x, 5, method="kcenter").indices,
                                  erasus.select(np.ascontiguousarray(x), 5, method="kcenter").indices)
