"""Torch twins of the Triton kernels: the CPU path of every entry point and the tests' oracle.

Each function computes exactly what its kernel computes (same formula, same order of fp32 operations,
same random matrix bit for bit), without launching Triton.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

__all__ = [
    "derive_seed",
    "fisher_accumulate_",
    "ghost_norms",
    "jl_matrix",
    "jl_project",
    "kronecker_project",
    "philox4x32",
    "ssd_dampen_",
]

_MASK32 = 0xFFFFFFFF
_MASK64 = 0xFFFFFFFFFFFFFFFF
# Philox4x32-10 constants (Salmon et al., SC 2011), as in triton/language/random.py.
_KEY_A, _KEY_B = 0x9E3779B9, 0xBB67AE85
_ROUND_A, _ROUND_B = 0xD2511F53, 0xCD9E8D57
# Columns sharing one Philox call: 4 words x 32 bits (Rademacher) or 4 normals (Gaussian).
RADEMACHER_COLS_PER_CALL = 128
GAUSSIAN_COLS_PER_CALL = 4
# Bound on the rows x proj_dim entries of R generated at once by the torch path.
_TILE_ENTRIES = 1 << 20


def ssd_dampen_(params: Sequence[torch.Tensor], imp_full: Sequence[torch.Tensor],
                imp_forget: Sequence[torch.Tensor], *, alpha: float, lam: float) -> int:
    """Selective Synaptic Dampening (Foster et al., AAAI 2024), in place.

    ``theta *= min(lam * I_D / I_Df, 1)`` where ``I_Df > alpha * I_D``; other entries are left untouched
    (bit-identical). The factor is computed in float32 as ``(lam * I_D) / I_Df``. Returns the number of
    selected entries (those with ``I_Df > alpha * I_D``).
    """
    if len(params) == 0:
        return 0
    full = [t.float() for t in imp_full]
    forget = [t.float() for t in imp_forget]
    thresholds = torch._foreach_mul(full, alpha)
    factors = torch._foreach_div(torch._foreach_mul(full, lam), forget)
    torch._foreach_clamp_max_(factors, 1.0)
    count = 0
    with torch.no_grad():
        for p, f, thr, beta in zip(params, forget, thresholds, factors):
            selected = f > thr
            count += int(selected.sum())
            # x * 1.0 is exact, so non-selected entries stay bit-identical while one foreach multiply
            # covers every tensor.
            beta.masked_fill_(~selected, 1.0)
        torch._foreach_mul_(list(params), factors)
    return count


def fisher_accumulate_(acc: Sequence[torch.Tensor], grads: Sequence[torch.Tensor | None], *,
                       weight: float) -> None:
    """Diagonal empirical Fisher running sum, in place: ``acc += weight * g * g`` (fp32 arithmetic).

    ``None`` entries in ``grads`` (parameters that received no gradient) leave their ``acc`` unchanged.
    """
    pairs = [(a, g) for a, g in zip(acc, grads) if g is not None]
    if not pairs:
        return
    targets = [a for a, _ in pairs]
    squares = [g.float() * g.float() for _, g in pairs]
    with torch.no_grad():
        torch._foreach_add_(targets, squares, alpha=weight)


def _mul32(a: int, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(high, low) 32-bit halves of the 64-bit product of uint32 values.

    The int64 product wraps modulo 2**64 (two's complement on every torch backend), which keeps both halves
    exact; the Random123 known-answer and ``tl.randint4x`` tests pin this down.
    """
    prod = a * b
    return (prod >> 32) & _MASK32, prod & _MASK32


def philox4x32(seed: int, offsets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Triton's ``tl.randint4x(seed, offsets)`` (Philox4x32-10) in torch: four int64 tensors of uint32 values.

    Counter ``(offset_lo, offset_hi, 0, 0)``, key ``(seed_lo, seed_hi)``; int64 arithmetic masked to 32 bits.
    """
    offsets = offsets.to(torch.int64)
    c0, c1 = offsets & _MASK32, (offsets >> 32) & _MASK32
    c2, c3 = torch.zeros_like(c0), torch.zeros_like(c0)
    k0, k1 = seed & _MASK32, (seed >> 32) & _MASK32
    for _ in range(10):
        hi_b, lo_b = _mul32(_ROUND_B, c2)
        hi_a, lo_a = _mul32(_ROUND_A, c0)
        c0, c2 = hi_b ^ c1 ^ k0, hi_a ^ c3 ^ k1
        c1, c3 = lo_b, lo_a
        k0, k1 = (k0 + _KEY_A) & _MASK32, (k1 + _KEY_B) & _MASK32
    return c0, c1, c2, c3


def _box_muller(w1: torch.Tensor, w2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Two N(0, 1) float32 values from two uint32 words (Box-Muller, 1958).

    ``u = (w + 0.5) / 2**32`` lies in (0, 1) exactly; the transform runs in float64 and is rounded once to
    float32, so libm, numpy (Triton's interpreter) and libdevice agree bit for bit unless a float64 result
    lands within one float64 ulp of a float32 rounding tie (probability ~2**-29 per entry).
    """
    u1 = (w1.to(torch.float64) + 0.5) * 2.0**-32
    u2 = (w2.to(torch.float64) + 0.5) * 2.0**-32
    r = torch.sqrt(-2.0 * torch.log(u1))
    th = 6.283185307179586 * u2
    return (r * torch.cos(th)).to(torch.float32), (r * torch.sin(th)).to(torch.float32)


def derive_seed(seed: int, stream: int) -> int:
    """Independent 63-bit seed for sub-stream ``stream`` of ``seed`` (SplitMix64 finalizer, Steele et al. 2014)."""
    z = (seed + (stream + 1) * 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return (z ^ (z >> 31)) >> 1


def jl_matrix(seed: int, rows: range | torch.Tensor, proj_dim: int, *, kind: str = "rademacher",
              device: torch.device | str | None = None) -> torch.Tensor:
    """Unscaled rows of the JL matrix R (entries +-1 or N(0, 1)), float32, shape (len(rows), proj_dim).

    ``R[i, j]`` is a pure function of ``(seed, i, j)``. Rademacher: Philox call ``i * ceil(p/128) + j // 128``,
    word ``(j // 32) % 4``, bit ``j % 32``; +1 when set. Gaussian: Philox call ``i * ceil(p/4) + j // 4``,
    normal ``j % 4`` of the Box-Muller pairs (word0, word1), (word2, word3).
    """
    i = torch.as_tensor(rows, dtype=torch.int64, device=device) if not isinstance(rows, torch.Tensor) else rows.to(
        torch.int64)
    per_call = RADEMACHER_COLS_PER_CALL if kind == "rademacher" else GAUSSIAN_COLS_PER_CALL
    calls = -(-proj_dim // per_call)
    offsets = i[:, None] * calls + torch.arange(calls, device=i.device)[None, :]
    words = philox4x32(seed, offsets)
    if kind == "rademacher":
        w = torch.stack(words, dim=-1)  # (rows, calls, 4)
        # bytes little-end first, each expanded through a 256 x 8 table of signs: column 8k + b of a word is
        # bit b of its byte k, i.e. bit j % 32
        octets = (w[..., None] >> torch.tensor([0, 8, 16, 24], device=i.device)) & 0xFF
        bits = (torch.arange(256, device=i.device)[:, None] >> torch.arange(8, device=i.device)) & 1
        signs = bits.to(torch.float32) * 2.0 - 1.0
        r = signs[octets.reshape(len(i), -1)].reshape(len(i), calls * RADEMACHER_COLS_PER_CALL)
    else:
        n1, n2 = _box_muller(words[0], words[1])
        n3, n4 = _box_muller(words[2], words[3])
        r = torch.stack((n1, n2, n3, n4), dim=-1).reshape(len(i), calls * GAUSSIAN_COLS_PER_CALL)
    return r[:, :proj_dim]


def jl_project(g: torch.Tensor, proj_dim: int, *, seed: int, kind: str = "rademacher",
               row_offset: int = 0) -> torch.Tensor:
    """Johnson-Lindenstrauss projection ``g @ R / sqrt(proj_dim)`` (Achlioptas, JCSS 2003), float32 out.

    R is regenerated tile by tile from Philox (never held whole), so any D fits in bounded memory; g rows are
    accumulated in float32 whatever their dtype. Column ``k`` of g meets row ``row_offset + k`` of R.
    """
    n, d = g.shape
    out = torch.zeros(n, proj_dim, dtype=torch.float32, device=g.device)
    step = max(1, _TILE_ENTRIES // max(proj_dim, 1))
    for start in range(0, d, step):
        stop = min(d, start + step)
        r = jl_matrix(seed, torch.arange(row_offset + start, row_offset + stop, device=g.device), proj_dim,
                      kind=kind)
        out.addmm_(g[:, start:stop].to(torch.float32), r)
    return out * torch.tensor(1.0 / math.sqrt(proj_dim), dtype=torch.float32)


def kronecker_project(acts: torch.Tensor, grads: torch.Tensor, p_in: int, p_out: int, *, seed: int,
                      kind: str = "rademacher") -> torch.Tensor:
    """LoGra factored projection (Choe et al., 2024) of per-sample linear-layer gradients.

    For ``G_b = sum_t g_bt a_bt^T`` (d_out x d_in) returns ``vec(P_out^T G_b P_in)`` (row-major, (B, p_out*p_in))
    with ``P_in = R(derive_seed(seed, 0))``, ``P_out = R(derive_seed(seed, 1))`` scaled JL matrices: a and g are
    projected first, then reduced over tokens, so neither G_b nor a B x T x r x r tensor is formed.
    """
    b, t, d_in = acts.shape
    d_out = grads.shape[-1]
    a_p = jl_project(acts.reshape(b * t, d_in), p_in, seed=derive_seed(seed, 0), kind=kind).reshape(b, t, p_in)
    g_p = jl_project(grads.reshape(b * t, d_out), p_out, seed=derive_seed(seed, 1), kind=kind).reshape(b, t, p_out)
    return torch.bmm(g_p.transpose(1, 2), a_p).reshape(b, p_out * p_in)


def ghost_norms(acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """Per-sample ``||sum_t g_t a_t^T||_F^2 = sum_{t,s} (a_t . a_s)(g_t . g_s)`` in float32 (ghost clipping,
    Li et al., ICLR 2022); ``||a||^2 ||g||^2`` for T = 1. Uses the T x T Grams or the d_out x d_in gradient,
    whichever is smaller, a few samples at a time."""
    b, t, d_in = acts.shape
    d_out = grads.shape[-1]
    a, g = acts.to(torch.float32), grads.to(torch.float32)
    if t == 1:
        return a.square().sum((1, 2)) * g.square().sum((1, 2))
    gram = t * t <= d_in * d_out
    per_sample = t * t if gram else d_in * d_out
    step = max(1, _TILE_ENTRIES // max(per_sample, 1))
    out = torch.zeros(b, dtype=torch.float32, device=acts.device)
    for s in range(0, b, step):
        ac, gc = a[s:s + step], g[s:s + step]
        if gram:
            out[s:s + step] = (torch.bmm(ac, ac.transpose(1, 2)) * torch.bmm(gc, gc.transpose(1, 2))).sum((1, 2))
        else:
            out[s:s + step] = torch.bmm(gc.transpose(1, 2), ac).square().sum((1, 2))
    return out
