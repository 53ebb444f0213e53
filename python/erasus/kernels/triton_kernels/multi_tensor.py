"""One launch over a whole list of tensors (SSD dampening, Fisher accumulation).

How one launch covers every parameter without copying them into a flat buffer: the host packs each
tensor's ``data_ptr()`` into an int64 table and builds the prefix sum of per-tensor block counts. Program
``pid`` binary-searches that prefix sum for its tensor, casts the tensor's address back to a typed
pointer and processes one ``BLOCK`` of it. Tensors are grouped by dtype (a pointer's element type is a
compile-time constant), so a model with one parameter dtype costs exactly one launch per call.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import torch
import triton
import triton.language as tl

_TL_DTYPES = {torch.float32: tl.float32, torch.float16: tl.float16, torch.bfloat16: tl.bfloat16,
              torch.float64: tl.float64}
BLOCK = 2048


@triton.jit
def _locate(pid, block_starts, n_tensors, LOG2_T: tl.constexpr):
    """Index of the tensor whose block range holds ``pid`` (block_starts is an exclusive prefix sum)."""
    lo = pid * 0
    hi = lo + n_tensors
    for _ in tl.static_range(LOG2_T):
        mid = (lo + hi) // 2
        start = tl.load(block_starts + mid)
        go_right = start <= pid
        lo = tl.where(go_right, mid, lo)
        hi = tl.where(go_right, hi, mid)
    return lo


@triton.jit
def _ssd_kernel(theta_ptrs, full_ptrs, forget_ptrs, numels, block_starts, counts, n_tensors, alpha, lam,
                THETA: tl.constexpr, IMP_FULL: tl.constexpr, IMP_FORGET: tl.constexpr,
                BLOCK: tl.constexpr, LOG2_T: tl.constexpr):
    pid = tl.program_id(0)
    t = _locate(pid, block_starts, n_tensors, LOG2_T)
    local = (pid - tl.load(block_starts + t)).to(tl.int64)
    offs = local * BLOCK + tl.arange(0, BLOCK)
    mask = offs < tl.load(numels + t)
    theta = tl.load(theta_ptrs + t).to(tl.pointer_type(THETA))
    full_p = tl.load(full_ptrs + t).to(tl.pointer_type(IMP_FULL))
    forget_p = tl.load(forget_ptrs + t).to(tl.pointer_type(IMP_FORGET))
    i_full = tl.load(full_p + offs, mask=mask, other=0.0).to(tl.float32)
    i_forget = tl.load(forget_p + offs, mask=mask, other=1.0).to(tl.float32)
    selected = (i_forget > i_full * alpha) & mask
    beta = tl.minimum(tl.math.div_rn(i_full * lam, i_forget), 1.0)
    x = tl.load(theta + offs, mask=selected, other=0.0).to(tl.float32)
    # Store only where selected: everything else is never written, hence bit-identical.
    tl.store(theta + offs, (x * beta).to(THETA), mask=selected)
    tl.store(counts + pid, tl.sum(selected.to(tl.int32), axis=0))


@triton.jit
def _fisher_kernel(acc_ptrs, grad_ptrs, numels, block_starts, n_tensors, weight,
                   ACC: tl.constexpr, GRAD: tl.constexpr, BLOCK: tl.constexpr, LOG2_T: tl.constexpr):
    pid = tl.program_id(0)
    t = _locate(pid, block_starts, n_tensors, LOG2_T)
    local = (pid - tl.load(block_starts + t)).to(tl.int64)
    offs = local * BLOCK + tl.arange(0, BLOCK)
    mask = offs < tl.load(numels + t)
    acc = tl.load(acc_ptrs + t).to(tl.pointer_type(ACC))
    grad = tl.load(grad_ptrs + t).to(tl.pointer_type(GRAD))
    g = tl.load(grad + offs, mask=mask, other=0.0).to(tl.float32)
    a = tl.load(acc + offs, mask=mask, other=0.0).to(tl.float32)
    tl.store(acc + offs, (a + weight * (g * g)).to(ACC), mask=mask)


def _tables(groups: list[list[torch.Tensor]], device: torch.device) -> tuple[list[torch.Tensor], torch.Tensor,
                                                                            torch.Tensor, int, int]:
    """Pointer tables (one per role), numels, block prefix sum, total blocks, log2 search depth."""
    first = groups[0]
    numels = [t.numel() for t in first]
    blocks = [triton.cdiv(n, BLOCK) for n in numels]
    starts = [0]
    for b in blocks:
        starts.append(starts[-1] + b)
    ptrs = [torch.tensor([t.data_ptr() for t in role], dtype=torch.int64, device=device) for role in groups]
    numel_t = torch.tensor(numels, dtype=torch.int64, device=device)
    starts_t = torch.tensor(starts, dtype=torch.int64, device=device)
    log2 = max(1, (len(first)).bit_length())
    return ptrs, numel_t, starts_t, starts[-1], log2


def _contiguous_groups(*lists: Sequence[torch.Tensor | None]) -> dict[tuple, list[int]]:
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, row in enumerate(zip(*lists)):
        tensors = [t for t in row if t is not None]
        if len(tensors) < len(row) or tensors[0].numel() == 0:
            continue
        groups[tuple(t.dtype for t in tensors)].append(i)
    return groups


def ssd_dampen_(params: Sequence[torch.Tensor], imp_full: Sequence[torch.Tensor],
                imp_forget: Sequence[torch.Tensor], *, alpha: float, lam: float) -> int:
    """Triton SSD over every parameter; params must be contiguous (checked by the caller)."""
    full = [t.contiguous() for t in imp_full]
    forget = [t.contiguous() for t in imp_forget]
    total = 0
    for dtypes, idx in _contiguous_groups(params, full, forget).items():
        roles = [[params[i] for i in idx], [full[i] for i in idx], [forget[i] for i in idx]]
        device = roles[0][0].device
        (p_ptr, f_ptr, g_ptr), numels, starts, n_blocks, log2 = _tables(roles, device)
        counts = torch.zeros(n_blocks, dtype=torch.int32, device=device)
        _ssd_kernel[(n_blocks,)](p_ptr, f_ptr, g_ptr, numels, starts, counts, len(idx), float(alpha), float(lam),
                                 THETA=_TL_DTYPES[dtypes[0]], IMP_FULL=_TL_DTYPES[dtypes[1]],
                                 IMP_FORGET=_TL_DTYPES[dtypes[2]], BLOCK=BLOCK, LOG2_T=log2)
        total += int(counts.sum(dtype=torch.int64))
    return total


def fisher_accumulate_(acc: Sequence[torch.Tensor], grads: Sequence[torch.Tensor | None], *,
                       weight: float) -> None:
    """Triton ``acc += weight * g**2`` over every tensor; acc must be contiguous (checked by the caller)."""
    contiguous = [None if g is None else g.contiguous() for g in grads]
    for dtypes, idx in _contiguous_groups(acc, contiguous).items():
        roles = [[acc[i] for i in idx], [g for i in idx if (g := contiguous[i]) is not None]]
        device = roles[0][0].device
        (a_ptr, g_ptr), numels, starts, n_blocks, log2 = _tables(roles, device)
        _fisher_kernel[(n_blocks,)](a_ptr, g_ptr, numels, starts, len(idx), float(weight),
                                    ACC=_TL_DTYPES[dtypes[0]], GRAD=_TL_DTYPES[dtypes[1]], BLOCK=BLOCK,
                                    LOG2_T=log2)
