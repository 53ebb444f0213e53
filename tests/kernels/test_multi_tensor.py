"""SSD dampening and Fisher accumulation: Triton kernel (interpreter) and torch twin vs float64 references."""

import pytest
import torch

import erasus.kernels as K
from erasus.errors import ErasusTypeError, InvalidInputError


def _model_like(seed, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    shapes = [(5, 7), (3001,), (2, 3), (1,), (0,), (4, 1, 3)]
    return [torch.randn(s, generator=g).to(dtype) for s in shapes], g


def _ssd_float64(params, full, forget, alpha, lam):
    out, count = [], 0
    for p, f, g in zip(params, full, forget):
        f64, g64 = f.double(), g.double()
        sel = g64 > alpha * f64
        count += int(sel.sum())
        beta = torch.clamp(lam * f64 / g64, max=1.0)
        out.append(torch.where(sel, p.double() * beta, p.double()))
    return out, count


@pytest.mark.parametrize("backend", ["torch", "triton"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_ssd_matches_float64_and_leaves_unselected_bit_identical(backend, dtype):
    params, g = _model_like(0, dtype)
    full = [torch.rand(p.shape, generator=g) for p in params]
    forget = [torch.rand(p.shape, generator=g) * 3 for p in params]
    alpha, lam = 1.5, 0.8
    expected, expected_count = _ssd_float64(params, full, forget, alpha, lam)
    work = [p.clone() for p in params]
    count = K.ssd_dampen_(work, full, forget, alpha=alpha, lam=lam, backend=backend)
    assert count == expected_count > 0
    # fp16: one rounding of the exact result, with subnormal spacing 2**-24 near zero.
    rtol, atol = (1e-6, 0.0) if dtype == torch.float32 else (1e-3, 2.0**-24)
    for p, w, e, f, fg in zip(params, work, expected, full, forget):
        torch.testing.assert_close(w.double(), e, rtol=rtol, atol=atol)
        untouched = ~(fg > alpha * f)
        assert torch.equal(w[untouched], p[untouched])


def test_ssd_triton_equals_torch_twin_bitwise():
    params, g = _model_like(1)
    full = [torch.rand(p.shape, generator=g) for p in params]
    forget = [torch.rand(p.shape, generator=g) * 2 for p in params]
    a, b = [p.clone() for p in params], [p.clone() for p in params]
    na = K.ssd_dampen_(a, full, forget, alpha=1.0, lam=0.5, backend="torch")
    nb = K.ssd_dampen_(b, full, forget, alpha=1.0, lam=0.5, backend="triton")
    assert na == nb
    for x, y in zip(a, b):
        assert torch.equal(x, y)


def test_ssd_non_contiguous_param_is_updated_in_place():
    base = torch.randn(6, 4)
    view = base.t()
    full, forget = torch.ones(4, 6), torch.full((4, 6), 10.0)
    expected = view * 0.1
    assert K.ssd_dampen_([view], [full], [forget], alpha=1.0, lam=1.0, backend="triton") == 24
    torch.testing.assert_close(base.t(), expected)


@pytest.mark.parametrize("backend", ["torch", "triton"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_fisher_accumulate_matches_float64(backend, dtype):
    params, g = _model_like(2)
    acc = [torch.rand(p.shape, generator=g).to(dtype) for p in params]
    grads = [torch.randn(p.shape, generator=g).to(dtype) for p in params]
    grads[2] = None
    expected = [a.double() + (0 if gr is None else 0.25 * gr.double() ** 2) for a, gr in zip(acc, grads)]
    K.fisher_accumulate_(acc, grads, weight=0.25, backend=backend)
    tol = 1e-6 if dtype == torch.float32 else 2e-3
    for a, e in zip(acc, expected):
        assert a.dtype == dtype
        torch.testing.assert_close(a.double(), e, rtol=tol, atol=tol)


def test_bad_inputs_raise_and_leave_params_untouched():
    p = [torch.randn(3, 2)]
    before = p[0].clone()
    with pytest.raises(InvalidInputError, match="shape"):
        K.ssd_dampen_(p, [torch.ones(3, 2)], [torch.ones(2, 3)], alpha=1.0, lam=1.0)
    with pytest.raises(InvalidInputError, match="finite"):
        K.ssd_dampen_(p, [torch.ones(3, 2)], [torch.ones(3, 2)], alpha=float("nan"), lam=1.0)
    with pytest.raises(InvalidInputError, match="pair one-to-one"):
        K.fisher_accumulate_(p, [], weight=1.0)
    with pytest.raises(ErasusTypeError, match="floating point"):
        K.fisher_accumulate_(p, [torch.ones(3, 2, dtype=torch.int64)], weight=1.0)
    with pytest.raises(InvalidInputError, match="backend"):
        K.fisher_accumulate_(p, [torch.ones(3, 2)], weight=1.0, backend="cuda")
    assert torch.equal(p[0], before)


def test_triton_backend_on_cpu_without_interpreter_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(InvalidInputError, match="TRITON_INTERPRET=1"):
        K.fisher_accumulate_([torch.zeros(2)], [torch.ones(2)], weight=1.0, backend="triton")


def test_import_does_not_pull_triton():
    import subprocess
    import sys

    code = "import sys, erasus.kernels; assert 'triton' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
