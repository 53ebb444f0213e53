"""Fused on-the-fly JL projection: ``out = g @ R / sqrt(p)`` with R regenerated tile by tile from Philox.

``R[i, j]`` depends only on ``(seed, i, j)`` (see :func:`erasus.kernels.reference.jl_matrix`), never on tile
sizes, split-K factor, batch size or the GPU, so the torch twin rebuilds the same matrix bit for bit.
Rademacher tiles cost one Philox call per 128 entries (4 words x 32 bits), Gaussian one per 4 entries.
The reduction over D is split across programs (split-K) into a float32 partial buffer that torch sums,
which keeps the result deterministic for a given launch configuration.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from .._dispatch import interpreting

_TL_DTYPES = {torch.float32: tl.float32, torch.float16: tl.float16, torch.bfloat16: tl.bfloat16}


@triton.jit
def _box_muller(w1, w2):
    """Same float64 transform as reference._box_muller, rounded once to float32."""
    u1 = (w1.to(tl.float64) + 0.5) * 2.3283064365386963e-10
    u2 = (w2.to(tl.float64) + 0.5) * 2.3283064365386963e-10
    r = tl.sqrt(-2.0 * tl.log(u1))
    th = 6.283185307179586 * u2
    return (r * tl.cos(th)).to(tl.float32), (r * tl.sin(th)).to(tl.float32)


@triton.jit
def _r_tile(seed, rows, col_start, proj_dim, BLOCK_N: tl.constexpr, GAUSSIAN: tl.constexpr):
    """Unscaled R[rows, col_start : col_start + BLOCK_N] as float32 (rows: int64 vector)."""
    if GAUSSIAN:
        calls = tl.cdiv(proj_dim, 4)
        call = col_start // 4 + tl.arange(0, BLOCK_N // 4)
        offsets = rows[:, None] * calls + call[None, :].to(tl.int64)
        c0, c1, c2, c3 = tl.randint4x(seed, offsets)
        n1, n2 = _box_muller(c0, c1)
        n3, n4 = _box_muller(c2, c3)
        r = tl.reshape(tl.join(tl.join(n1, n3), tl.join(n2, n4)), (rows.shape[0], BLOCK_N))
    else:
        calls = tl.cdiv(proj_dim, 128)
        call = col_start // 128 + tl.arange(0, BLOCK_N // 128)
        offsets = rows[:, None] * calls + call[None, :].to(tl.int64)
        c0, c1, c2, c3 = tl.randint4x(seed, offsets)
        # word w of call c covers columns 128c + 32w ... 128c + 32w + 31
        words = tl.reshape(tl.join(tl.join(c0, c2), tl.join(c1, c3)), (rows.shape[0], BLOCK_N // 32))
        shifts = tl.arange(0, 32).to(tl.uint32)
        bits = (words[:, :, None] >> shifts[None, None, :]) & 1
        r = tl.reshape(bits, (rows.shape[0], BLOCK_N)).to(tl.float32) * 2.0 - 1.0
    return r


@triton.jit
def _matrix_kernel(out, seed, n_rows, proj_dim, BLOCK_K: tl.constexpr, BLOCK_N: tl.constexpr,
                   GAUSSIAN: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_K + tl.arange(0, BLOCK_K)
    col_start = tl.program_id(1) * BLOCK_N
    cols = col_start + tl.arange(0, BLOCK_N)
    r = _r_tile(seed, rows.to(tl.int64), col_start, proj_dim, BLOCK_N, GAUSSIAN)
    mask = (rows[:, None] < n_rows) & (cols[None, :] < proj_dim)
    tl.store(out + rows[:, None].to(tl.int64) * proj_dim + cols[None, :], r, mask=mask)


@triton.jit
def _project_kernel(g, part, seed, n, d, proj_dim, stride_g, k_per_split, row_offset,
                    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                    GAUSSIAN: tl.constexpr, IEEE: tl.constexpr):
    pid_m, pid_n, pid_k = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    col_start = pid_n * BLOCK_N
    cols = col_start + tl.arange(0, BLOCK_N)
    k_lo = pid_k * k_per_split
    k_hi = tl.minimum(k_lo + k_per_split, d)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    row_ptr = g + m[:, None].to(tl.int64) * stride_g
    for k0 in range(k_lo, k_hi, BLOCK_K):
        k = k0 + tl.arange(0, BLOCK_K)
        a = tl.load(row_ptr + k[None, :], mask=(m[:, None] < n) & (k[None, :] < k_hi), other=0.0)
        r = _r_tile(seed, k.to(tl.int64) + row_offset, col_start, proj_dim, BLOCK_N, GAUSSIAN)
        if GAUSSIAN:
            # N(0, 1) entries are not exact in 16-bit formats: keep R in float32 so the result is g @ R
            # for the same R as the torch twin, not a rounded copy.
            acc = tl.dot(a.to(tl.float32), r, acc, input_precision="ieee")
        elif IEEE:
            acc = tl.dot(a, r, acc, input_precision="ieee")
        else:
            # +-1 is exact in fp16/bf16: tensor cores with float32 accumulation
            acc = tl.dot(a, r.to(a.dtype), acc)
    base = part + pid_k.to(tl.int64) * n * proj_dim
    tl.store(base + m[:, None].to(tl.int64) * proj_dim + cols[None, :], acc,
             mask=(m[:, None] < n) & (cols[None, :] < proj_dim))


def _col_block(proj_dim: int) -> int:
    """Columns per tile: a multiple of 128 (one Philox call's worth of Rademacher columns)."""
    if interpreting():
        return max(128, min(512, triton.next_power_of_2(proj_dim)))  # few, large tiles: the interpreter is slow
    return 256 if proj_dim > 128 else 128


def jl_matrix(seed: int, n_rows: int, proj_dim: int, *, kind: str, device: torch.device) -> torch.Tensor:
    """Unscaled R[:n_rows] generated by the kernel's own tile function (the tests' bit-identity check)."""
    out = torch.empty(n_rows, proj_dim, dtype=torch.float32, device=device)
    block_k, block_n = 32, _col_block(proj_dim)
    grid = (triton.cdiv(n_rows, block_k), triton.cdiv(proj_dim, block_n))
    _matrix_kernel[grid](out, seed, n_rows, proj_dim, BLOCK_K=block_k, BLOCK_N=block_n,
                         GAUSSIAN=kind == "gaussian")
    return out


def jl_project(g: torch.Tensor, proj_dim: int, *, seed: int, kind: str, row_offset: int = 0) -> torch.Tensor:
    """``g @ R / sqrt(proj_dim)`` for contiguous-row g of shape (n, d) in fp32/fp16/bf16; float32 (n, p) out."""
    n, d = g.shape
    if n == 0 or d == 0:
        return torch.zeros(n, proj_dim, dtype=torch.float32, device=g.device)
    if interpreting() and g.dtype == torch.bfloat16:
        g = g.float()  # numpy (the interpreter) has no bfloat16; the values are exact in float32
    if g.stride(1) != 1:
        g = g.contiguous()
    block_m = min(64, max(16, triton.next_power_of_2(n)))
    block_n = _col_block(proj_dim)
    block_k = 128 if interpreting() else 64
    tiles = triton.cdiv(n, block_m) * triton.cdiv(proj_dim, block_n)
    if interpreting():
        split = 1
    else:
        sms = torch.cuda.get_device_properties(g.device).multi_processor_count
        # enough programs to fill the GPU, while each still streams a long run of D and the partial buffer
        # stays under ~256 MiB
        split = max(1, min(triton.cdiv(4 * sms, tiles), triton.cdiv(d, 8 * block_k),
                           (256 << 20) // max(1, 4 * n * proj_dim)))
    k_per_split = triton.cdiv(triton.cdiv(d, split), block_k) * block_k
    split = triton.cdiv(d, k_per_split) if d > 0 else 1
    part = torch.zeros(split, n, proj_dim, dtype=torch.float32, device=g.device)
    grid = (triton.cdiv(n, block_m), triton.cdiv(proj_dim, block_n), split)
    _project_kernel[grid](g, part, seed, n, d, proj_dim, g.stride(0), k_per_split, row_offset,
                          BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=block_k, GAUSSIAN=kind == "gaussian",
                          IEEE=g.dtype == torch.float32, num_warps=8 if not interpreting() else 4)
    out = part[0] if split == 1 else part.sum(0)
    return out * (1.0 / math.sqrt(proj_dim))
