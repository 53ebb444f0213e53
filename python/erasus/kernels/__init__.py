"""Fused kernels for per-sample gradient features and parameter updates.

Every entry point takes ``backend="auto" | "triton" | "torch"``: ``auto`` runs the Triton kernel when all
tensors are on CUDA and triton is importable, and the torch twin in :mod:`erasus.kernels.reference`
otherwise. ``"triton"`` on CPU tensors runs the kernels in Triton's interpreter and needs
``TRITON_INTERPRET=1`` set before triton is first imported. Triton itself is imported only inside the
Triton path, so this module loads without it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from . import reference
from ..errors import InvalidInputError
from ._dispatch import check_finite_scalar, check_tensor_lists, resolve_backend

__all__ = ["fisher_accumulate_", "reference", "ssd_dampen_"]


def _with_contiguous(tensors: Sequence[torch.Tensor]) -> tuple[list[torch.Tensor], list[tuple[int, torch.Tensor]]]:
    """Contiguous stand-ins for in-place targets, plus the (index, original) pairs to copy back."""
    work, back = [], []
    for i, t in enumerate(tensors):
        if t.is_contiguous():
            work.append(t)
        else:
            c = t.contiguous()
            work.append(c)
            back.append((i, t))
    return work, back


@torch.no_grad()
def ssd_dampen_(params: Sequence[torch.Tensor], imp_full: Sequence[torch.Tensor],
                imp_forget: Sequence[torch.Tensor], *, alpha: float, lam: float, backend: str = "auto") -> int:
    """Selective Synaptic Dampening (Foster et al., AAAI 2024) over all parameters, in place.

    ``theta <- theta * min(lam * I_D / I_Df, 1)`` where ``I_Df > alpha * I_D`` (``I_D``: diagonal Fisher
    importance on the full training data, ``I_Df``: on the forget set); every other entry stays
    bit-identical. The Triton path updates every parameter in a single launch (per dtype group).

    Returns:
        How many parameter entries were selected (``I_Df > alpha * I_D``) and dampened.
    """
    check_tensor_lists("params", params, ("imp_full", imp_full), ("imp_forget", imp_forget))
    if any(t is None for t in imp_full) or any(t is None for t in imp_forget):
        raise InvalidInputError("imp_full and imp_forget must hold a tensor for every parameter (found None)")
    alpha = check_finite_scalar("alpha", alpha)
    lam = check_finite_scalar("lam", lam)
    params = list(params)
    if resolve_backend(backend, params) == "torch":
        return reference.ssd_dampen_(params, imp_full, imp_forget, alpha=alpha, lam=lam)
    from .triton_kernels import multi_tensor

    work, back = _with_contiguous(params)
    count = multi_tensor.ssd_dampen_(work, list(imp_full), list(imp_forget), alpha=alpha, lam=lam)
    for i, original in back:
        original.copy_(work[i])
    return count


@torch.no_grad()
def fisher_accumulate_(acc: Sequence[torch.Tensor], grads: Sequence[torch.Tensor | None], *, weight: float = 1.0,
                       backend: str = "auto") -> None:
    """Diagonal empirical Fisher running sum, in place: ``acc += weight * g**2`` for every pair.

    The diagonal Fisher ``F = E[(d log p / d theta)^2]`` (Kirkpatrick et al., PNAS 2017) used by SSD and
    Fisher forgetting is accumulated batch by batch; ``weight`` is e.g. ``1 / num_batches``. ``None``
    gradients are skipped. The Triton path covers every tensor in one launch (per dtype group).
    """
    check_tensor_lists("acc", acc, ("grads", grads))
    weight = check_finite_scalar("weight", weight)
    acc = list(acc)
    if resolve_backend(backend, acc) == "torch":
        reference.fisher_accumulate_(acc, grads, weight=weight)
        return
    from .triton_kernels import multi_tensor

    work, back = _with_contiguous(acc)
    multi_tensor.fisher_accumulate_(work, list(grads), weight=weight)
    for i, original in back:
        original.copy_(work[i])
