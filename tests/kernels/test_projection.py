"""JL / Kronecker projections and ghost norms: kernels (interpreter) vs torch twins vs float64 brute force."""

import math

import pytest
import torch
import triton
import triton.language as tl

import erasus.kernels as K
from erasus.errors import ErasusTypeError, InvalidInputError
from erasus.kernels import reference as R
from erasus.kernels.triton_kernels import jl as triton_jl


@triton.jit
def _randint4x_kernel(out, seed, n, BLOCK: tl.constexpr):
    offs = tl.arange(0, BLOCK)
    c0, c1, c2, c3 = tl.randint4x(seed, offs.to(tl.int64) * 3_000_000_019)
    mask = offs < n
    tl.store(out + offs * 4 + 0, c0.to(tl.int64), mask=mask)
    tl.store(out + offs * 4 + 1, c1.to(tl.int64), mask=mask)
    tl.store(out + offs * 4 + 2, c2.to(tl.int64), mask=mask)
    tl.store(out + offs * 4 + 3, c3.to(tl.int64), mask=mask)


def test_philox_matches_random123_known_answer():
    # Random123 kat_vectors: philox4x32-10, counter 0, key 0
    words = R.philox4x32(0, torch.zeros(1, dtype=torch.int64))
    assert [int(w) & 0xFFFFFFFF for w in words] == [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]


@pytest.mark.parametrize("seed", [0, 7, 2**40 + 3])
def test_philox_matches_triton_randint4x(seed):
    n = 50
    out = torch.zeros(n, 4, dtype=torch.int64)
    _randint4x_kernel[(1,)](out, seed, n, BLOCK=64)
    offsets = torch.arange(n, dtype=torch.int64) * 3_000_000_019  # exercises the high counter word
    expected = torch.stack(R.philox4x32(seed, offsets), dim=1)
    assert torch.equal(out & 0xFFFFFFFF, expected)


@pytest.mark.parametrize("kind", ["rademacher", "gaussian"])
@pytest.mark.parametrize("rows,proj_dim", [(37, 5), (40, 130), (19, 257)])
def test_kernel_matrix_is_bit_identical_to_torch_twin(kind, rows, proj_dim):
    seed = 123456789012
    got = triton_jl.jl_matrix(seed, rows, proj_dim, kind=kind, device=torch.device("cpu"))
    assert torch.equal(got, R.jl_matrix(seed, range(rows), proj_dim, kind=kind))


def test_matrix_entries_are_a_pure_function_of_seed_row_col():
    full = R.jl_matrix(3, range(64), 300)
    assert torch.equal(R.jl_matrix(3, range(20, 45), 300), full[20:45])
    # columns do not depend on proj_dim beyond the ones that exist
    assert torch.equal(R.jl_matrix(3, range(64), 300)[:, :100], R.jl_matrix(3, range(64), 300)[:, :100])
    assert not torch.equal(R.jl_matrix(4, range(64), 300), full)
    assert set(full.unique().tolist()) == {-1.0, 1.0}
    assert abs(full.mean().item()) < 0.02


@pytest.mark.parametrize("kind", ["rademacher", "gaussian"])
def test_projection_kernel_reproduces_the_matrix_exactly(kind):
    d, p = 150, 70
    eye = torch.eye(d)
    got = K.jl_project(eye, p, seed=11, kind=kind, backend="triton")
    expected = R.jl_matrix(11, range(d), p, kind=kind) * torch.tensor(1 / math.sqrt(p), dtype=torch.float32)
    assert torch.equal(got, expected)


@pytest.mark.parametrize("backend", ["torch", "triton"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("kind", ["rademacher", "gaussian"])
def test_jl_project_matches_float64_dense_product(backend, dtype, kind):
    g = torch.randn(6, 333, generator=torch.Generator().manual_seed(0)).to(dtype)
    p = 200
    dense = R.jl_matrix(5, range(333), p, kind=kind).double() / math.sqrt(p)
    expected = g.double() @ dense
    got = K.jl_project(g, p, seed=5, kind=kind, backend=backend)
    assert got.dtype == torch.float32 and got.shape == (6, p)
    torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-4)


def test_jl_project_bfloat16_and_1d_input_on_torch_path():
    g = torch.randn(500, generator=torch.Generator().manual_seed(1))
    expected = K.jl_project(g.bfloat16().float(), 64, seed=2)
    got = K.jl_project(g.bfloat16(), 64, seed=2)
    assert got.shape == (64,)
    torch.testing.assert_close(got, expected)


def test_torch_path_chunks_d_without_changing_the_result(monkeypatch):
    g = torch.randn(3, 1000, dtype=torch.float64).float()
    whole = K.jl_project(g, 64, seed=9, backend="torch")
    monkeypatch.setattr(R, "_TILE_ENTRIES", 64 * 7)  # 7 rows of R per tile
    torch.testing.assert_close(K.jl_project(g, 64, seed=9, backend="torch"), whole, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("kind", ["rademacher", "gaussian"])
def test_jl_preserves_pairwise_distances(kind):
    # Johnson-Lindenstrauss: ||f(x)-f(y)||^2 / ||x-y||^2 concentrates at 1 with std ~ sqrt(2/p)
    x = torch.randn(20, 1000, generator=torch.Generator().manual_seed(3))
    y = K.jl_project(x, 1024, seed=0, kind=kind)
    ratio = torch.pdist(y.double()) ** 2 / torch.pdist(x.double()) ** 2
    assert abs(ratio.mean().item() - 1) < 0.03
    assert ratio.min().item() > 0.75 and ratio.max().item() < 1.25


def _dense_kron(a, g, p_in, p_out, seed, kind):
    b, t, d_in = a.shape
    d_out = g.shape[-1]
    p_i = R.jl_matrix(R.derive_seed(seed, 0), range(d_in), p_in, kind=kind).double() / math.sqrt(p_in)
    p_o = R.jl_matrix(R.derive_seed(seed, 1), range(d_out), p_out, kind=kind).double() / math.sqrt(p_out)
    grad = torch.einsum("bto,bti->boi", g.double(), a.double())  # per-sample weight gradients
    return grad.reshape(b, d_out * d_in) @ torch.kron(p_o, p_i)


@pytest.mark.parametrize("backend", ["torch", "triton"])
@pytest.mark.parametrize("t", [1, 6])
@pytest.mark.parametrize("kind", ["rademacher", "gaussian"])
def test_kronecker_equals_vec_grad_times_kron(backend, t, kind):
    gen = torch.Generator().manual_seed(t)
    a, g = torch.randn(3, t, 24, generator=gen), torch.randn(3, t, 10, generator=gen)
    got = K.kronecker_project(a, g, 8, 5, seed=42, kind=kind, backend=backend)
    assert got.shape == (3, 40)
    torch.testing.assert_close(got.double(), _dense_kron(a, g, 8, 5, 42, kind), rtol=1e-5, atol=1e-4)


def test_kronecker_fp16_kernel_matches_float64():
    gen = torch.Generator().manual_seed(11)
    a, g = torch.randn(2, 5, 24, generator=gen).half(), torch.randn(2, 5, 10, generator=gen).half()
    got = K.kronecker_project(a, g, 8, 5, seed=4, backend="triton")
    torch.testing.assert_close(got.double(), _dense_kron(a, g, 8, 5, 4, "rademacher"), rtol=1e-4, atol=1e-4)


def test_kronecker_accepts_2d_inputs():
    a, g = torch.randn(4, 9), torch.randn(4, 3)
    torch.testing.assert_close(K.kronecker_project(a, g, 4, 2, seed=1),
                               K.kronecker_project(a[:, None], g[:, None], 4, 2, seed=1))


@pytest.mark.parametrize("backend", ["torch", "triton"])
@pytest.mark.parametrize("t,d_in,d_out", [(1, 30, 7), (9, 20, 11), (40, 3, 2)])
def test_ghost_norms_equal_materialized_norms(backend, t, d_in, d_out):
    gen = torch.Generator().manual_seed(t)
    a, g = torch.randn(5, t, d_in, generator=gen), torch.randn(5, t, d_out, generator=gen)
    expected = torch.einsum("bto,bti->boi", g.double(), a.double()).square().sum((1, 2))
    got = K.ghost_norms(a, g, backend=backend)
    torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-5)


def test_ghost_norms_fp16_kernel():
    a, g = torch.randn(2, 4, 16).half(), torch.randn(2, 4, 8).half()
    expected = torch.einsum("bto,bti->boi", g.double(), a.double()).square().sum((1, 2))
    torch.testing.assert_close(K.ghost_norms(a, g, backend="triton").double(), expected, rtol=1e-3, atol=1e-3)


def test_projection_argument_errors():
    g = torch.randn(2, 8)
    with pytest.raises(InvalidInputError, match="kind"):
        K.jl_project(g, 4, seed=0, kind="sparse")
    with pytest.raises(InvalidInputError, match="proj_dim"):
        K.jl_project(g, 0, seed=0)
    with pytest.raises(InvalidInputError, match="seed"):
        K.jl_project(g, 4, seed=-1)
    with pytest.raises(ErasusTypeError, match="float32"):
        K.jl_project(g.long(), 4, seed=0)
    with pytest.raises(InvalidInputError, match="batch"):
        K.kronecker_project(torch.randn(2, 3, 4), torch.randn(2, 4, 4), 2, 2, seed=0)
    with pytest.raises(InvalidInputError, match="dimensions"):
        K.ghost_norms(torch.randn(4), torch.randn(4))


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_row_offset_projects_a_long_vector_in_pieces(backend):
    g = torch.randn(4, 300, generator=torch.Generator().manual_seed(8))
    whole = K.jl_project(g, 40, seed=1, backend="torch")
    pieces = K.jl_project(g[:, :130], 40, seed=1, backend=backend) + K.jl_project(
        g[:, 130:], 40, seed=1, row_offset=130, backend=backend)
    torch.testing.assert_close(pieces, whole, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_empty_inputs_give_empty_or_zero_results(backend):
    assert K.jl_project(torch.randn(0, 10), 3, seed=0, backend=backend).shape == (0, 3)
    assert torch.equal(K.jl_project(torch.randn(2, 0), 3, seed=0, backend=backend), torch.zeros(2, 3))
    assert K.kronecker_project(torch.randn(0, 3, 4), torch.randn(0, 3, 2), 2, 2, seed=0,
                               backend=backend).shape == (0, 4)
    assert torch.equal(K.ghost_norms(torch.randn(2, 0, 4), torch.randn(2, 0, 2), backend=backend), torch.zeros(2))
