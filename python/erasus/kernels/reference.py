"""Torch twins of the Triton kernels: the CPU path of every entry point and the tests' oracle.

Each function computes exactly what its kernel computes (same formula, same order of fp32 operations,
same random matrix bit for bit), without launching Triton.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["ssd_dampen_", "fisher_accumulate_"]


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
