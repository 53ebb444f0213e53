"""Per-sample linear-layer kernels reduced over tokens: LoGra's factored projection and ghost norms.

Both take a layer's inputs ``a`` (B, T, d_in) and output gradients ``g`` (B, T, d_out); the per-sample
weight gradient ``G_b = sum_t g_bt a_bt^T`` is never formed.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .._dispatch import interpreting
from .jl import jl_project


@triton.jit
def _token_outer_kernel(gp, ap, out, t_len, p_out, p_in,
                        BLOCK_I: tl.constexpr, BLOCK_J: tl.constexpr, BLOCK_T: tl.constexpr):
    """out[b] = gp[b]^T @ ap[b]: (p_out, p_in), reduced over T tokens in registers."""
    b = tl.program_id(0).to(tl.int64)
    i = tl.program_id(1) * BLOCK_I + tl.arange(0, BLOCK_I)
    j = tl.program_id(2) * BLOCK_J + tl.arange(0, BLOCK_J)
    acc = tl.zeros((BLOCK_I, BLOCK_J), dtype=tl.float32)
    for t0 in range(0, t_len, BLOCK_T):
        t = t0 + tl.arange(0, BLOCK_T)
        g_t = tl.load(gp + b * t_len * p_out + t[None, :] * p_out + i[:, None],
                      mask=(t[None, :] < t_len) & (i[:, None] < p_out), other=0.0)
        a_t = tl.load(ap + b * t_len * p_in + t[:, None] * p_in + j[None, :],
                      mask=(t[:, None] < t_len) & (j[None, :] < p_in), other=0.0)
        acc = tl.dot(g_t, a_t, acc, input_precision="ieee")
    tl.store(out + b * p_out * p_in + i[:, None] * p_in + j[None, :], acc,
             mask=(i[:, None] < p_out) & (j[None, :] < p_in))


@triton.jit
def _gram_tile(x, b, t_len, d, t_rows, s_rows, BLOCK_T: tl.constexpr, BLOCK_K: tl.constexpr, IEEE: tl.constexpr):
    """x[b, t_rows] @ x[b, s_rows]^T accumulated in float32 over d."""
    acc = tl.zeros((BLOCK_T, BLOCK_T), dtype=tl.float32)
    base = x + b * t_len * d
    for k0 in range(0, d, BLOCK_K):
        k = k0 + tl.arange(0, BLOCK_K)
        lhs = tl.load(base + t_rows[:, None] * d + k[None, :], mask=(t_rows[:, None] < t_len) & (k[None, :] < d),
                      other=0.0)
        rhs = tl.load(base + s_rows[None, :] * d + k[:, None], mask=(s_rows[None, :] < t_len) & (k[:, None] < d),
                      other=0.0)
        if IEEE:
            acc = tl.dot(lhs, rhs, acc, input_precision="ieee")
        else:
            acc = tl.dot(lhs, rhs, acc)
    return acc


@triton.jit
def _ghost_kernel(a, g, part, t_len, d_in, d_out, n_tiles,
                  BLOCK_T: tl.constexpr, BLOCK_K: tl.constexpr, IEEE: tl.constexpr):
    """part[b, tile] = sum over one (t, s) tile of (a_t . a_s)(g_t . g_s)."""
    b = tl.program_id(0).to(tl.int64)
    t_rows = tl.program_id(1) * BLOCK_T + tl.arange(0, BLOCK_T)
    s_rows = tl.program_id(2) * BLOCK_T + tl.arange(0, BLOCK_T)
    gram_a = _gram_tile(a, b, t_len, d_in, t_rows, s_rows, BLOCK_T, BLOCK_K, IEEE)
    gram_g = _gram_tile(g, b, t_len, d_out, t_rows, s_rows, BLOCK_T, BLOCK_K, IEEE)
    total = tl.sum(tl.sum(gram_a * gram_g, axis=1), axis=0)
    tl.store(part + b * n_tiles * n_tiles + tl.program_id(1) * n_tiles + tl.program_id(2), total)


def kronecker_project(acts: torch.Tensor, grads: torch.Tensor, p_in: int, p_out: int, *, seed_in: int,
                      seed_out: int, kind: str) -> torch.Tensor:
    """(B, p_out * p_in) float32: project a and g with the fused JL kernel, then reduce over tokens."""
    b, t, d_in = acts.shape
    d_out = grads.shape[-1]
    if b * t == 0:
        return torch.zeros(b, p_out * p_in, dtype=torch.float32, device=acts.device)
    a_p = jl_project(acts.reshape(b * t, d_in), p_in, seed=seed_in, kind=kind).reshape(b, t, p_in)
    g_p = jl_project(grads.reshape(b * t, d_out), p_out, seed=seed_out, kind=kind).reshape(b, t, p_out)
    out = torch.empty(b, p_out, p_in, dtype=torch.float32, device=acts.device)
    block_i = min(64, max(16, triton.next_power_of_2(p_out)))
    block_j = min(64, max(16, triton.next_power_of_2(p_in)))
    block_t = min(64, max(16, triton.next_power_of_2(t)))
    grid = (b, triton.cdiv(p_out, block_i), triton.cdiv(p_in, block_j))
    _token_outer_kernel[grid](g_p, a_p, out, t, p_out, p_in, BLOCK_I=block_i, BLOCK_J=block_j, BLOCK_T=block_t)
    return out.reshape(b, p_out * p_in)


def ghost_norms(acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """(B,) float32 per-sample squared Frobenius norms from the T x T Gram identity."""
    b, t, d_in = acts.shape
    d_out = grads.shape[-1]
    if b * t == 0:
        return torch.zeros(b, dtype=torch.float32, device=acts.device)
    if interpreting() and acts.dtype == torch.bfloat16:
        acts, grads = acts.float(), grads.float()
    acts, grads = acts.contiguous(), grads.contiguous()
    block_t = min(64, max(16, triton.next_power_of_2(t)))
    block_k = 128 if interpreting() else 64
    n_tiles = triton.cdiv(t, block_t)
    part = torch.empty(b, n_tiles, n_tiles, dtype=torch.float32, device=acts.device)
    _ghost_kernel[(b, n_tiles, n_tiles)](acts, grads, part, t, d_in, d_out, n_tiles, BLOCK_T=block_t,
                                         BLOCK_K=block_k, IEEE=acts.dtype == torch.float32)
    return part.sum((1, 2))
