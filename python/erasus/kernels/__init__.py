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

from ..errors import ErasusTypeError, InvalidInputError
from . import reference
from ._dispatch import check_finite_scalar, check_seed, check_tensor_lists, resolve_backend

__all__ = ["fisher_accumulate_", "ghost_norms", "jl_project", "kronecker_project", "reference", "ssd_dampen_"]

_KINDS = ("rademacher", "gaussian")
_PROJECT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


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


def _check_dim(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ErasusTypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise InvalidInputError(f"{name} must be >= 1, got {value}")
    return value


def _check_kind(kind: str) -> str:
    if kind not in _KINDS:
        raise InvalidInputError(f"kind must be one of {_KINDS}, got {kind!r}")
    return kind


def _check_float_tensor(name: str, x: torch.Tensor, ndims: tuple[int, ...]) -> None:
    if not isinstance(x, torch.Tensor):
        raise ErasusTypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in _PROJECT_DTYPES:
        raise ErasusTypeError(f"{name} must be float32, float16 or bfloat16, got {x.dtype}")
    if x.ndim not in ndims:
        raise InvalidInputError(f"{name} must have {' or '.join(map(str, ndims))} dimensions, got shape "
                                f"{tuple(x.shape)}")


def jl_project(g: torch.Tensor, proj_dim: int, *, seed: int, kind: str = "rademacher", row_offset: int = 0,
               backend: str = "auto") -> torch.Tensor:
    """Johnson-Lindenstrauss random projection ``g @ R / sqrt(proj_dim)`` (Achlioptas, JCSS 2003).

    ``R[i, j]`` (+-1 for ``"rademacher"``, N(0, 1) for ``"gaussian"``) is a pure function of ``(seed, i, j)``
    through counter-based Philox4x32-10, generated on the fly and never stored, so the result does not depend
    on tile sizes, chunking, batch size or GPU model; the torch path rebuilds the same matrix bit for bit
    (:func:`erasus.kernels.reference.jl_matrix`). ``E||gR||^2 = ||g||^2`` and pairwise distances are kept
    within ``1 +- eps`` with high probability for ``proj_dim = O(log n / eps^2)``.

    Args:
        g: (n, D) or (D,) float32/float16/bfloat16 rows; any D.
        proj_dim: output dimension p.
        row_offset: column k of g meets row ``row_offset + k`` of R, so a long vector can be projected in
            pieces (``sum_c jl_project(g_c, row_offset=start_c) == jl_project(g)``).
    Returns:
        float32 (n, p) (or (p,) for 1-D input), accumulated in float32.
    """
    _check_float_tensor("g", g, (1, 2))
    proj_dim = _check_dim("proj_dim", proj_dim)
    seed, kind = check_seed(seed), _check_kind(kind)
    if isinstance(row_offset, bool) or not isinstance(row_offset, int) or row_offset < 0:
        raise InvalidInputError(f"row_offset must be a non-negative int, got {row_offset!r}")
    rows = g.unsqueeze(0) if g.ndim == 1 else g
    if resolve_backend(backend, [g]) == "torch":
        out = reference.jl_project(rows, proj_dim, seed=seed, kind=kind, row_offset=row_offset)
    else:
        from .triton_kernels import jl

        out = jl.jl_project(rows, proj_dim, seed=seed, kind=kind, row_offset=row_offset)
    return out[0] if g.ndim == 1 else out


def _as_tokens(acts: torch.Tensor, grads: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, d) -> (B, 1, d) and a shape check shared by the factored kernels."""
    _check_float_tensor("acts", acts, (2, 3))
    _check_float_tensor("grads", grads, (2, 3))
    if acts.ndim != grads.ndim or acts.shape[:-1] != grads.shape[:-1]:
        raise InvalidInputError(f"acts {tuple(acts.shape)} and grads {tuple(grads.shape)} must share the batch "
                                "(and token) dimensions: (B, d_in)/(B, d_out) or (B, T, d_in)/(B, T, d_out)")
    if acts.device != grads.device:
        raise InvalidInputError(f"acts is on {acts.device} but grads is on {grads.device}")
    if acts.ndim == 2:
        acts, grads = acts.unsqueeze(1), grads.unsqueeze(1)
    return acts, grads


def kronecker_project(acts: torch.Tensor, grads: torch.Tensor, p_in: int, p_out: int, *, seed: int,
                      kind: str = "rademacher", backend: str = "auto") -> torch.Tensor:
    """LoGra factored projection of per-sample linear-layer gradients (Choe et al., 2024).

    With ``G_b = sum_t g_bt a_bt^T`` (the per-sample weight gradient of ``y = W a``, shape d_out x d_in),
    returns ``vec(P_out^T G_b P_in) = vec(G_b) @ kron(P_out, P_in)`` (row-major vec, shape (B, p_out * p_in)),
    where ``P_in`` (d_in x p_in) and ``P_out`` (d_out x p_out) are the :func:`jl_project` matrices for seeds
    ``reference.derive_seed(seed, 0)`` and ``reference.derive_seed(seed, 1)``. a and g are projected first
    and then reduced over tokens, so neither G_b nor a B x T x r x r tensor is formed.

    Args:
        acts: layer inputs, (B, d_in) or (B, T, d_in).
        grads: gradients w.r.t. the layer outputs, (B, d_out) or (B, T, d_out).
    """
    acts, grads = _as_tokens(acts, grads)
    p_in, p_out = _check_dim("p_in", p_in), _check_dim("p_out", p_out)
    seed, kind = check_seed(seed), _check_kind(kind)
    if resolve_backend(backend, [acts, grads]) == "torch":
        return reference.kronecker_project(acts, grads, p_in, p_out, seed=seed, kind=kind)
    from .triton_kernels import factored

    return factored.kronecker_project(acts, grads, p_in, p_out, seed_in=reference.derive_seed(seed, 0),
                                      seed_out=reference.derive_seed(seed, 1), kind=kind)


def ghost_norms(acts: torch.Tensor, grads: torch.Tensor, *, backend: str = "auto") -> torch.Tensor:
    """Per-sample squared Frobenius norms of linear-layer weight gradients without forming them.

    ``||sum_t g_t a_t^T||_F^2 = sum_{t,s} (a_t . a_s)(g_t . g_s)`` (the "ghost norm" identity of ghost
    clipping, Li et al., ICLR 2022; Goodfellow 2015 for T = 1, where it is ``||a||^2 ||g||^2``).
    Returns float32 (B,).
    """
    acts, grads = _as_tokens(acts, grads)
    t, d_in, d_out = acts.shape[1], acts.shape[2], grads.shape[2]
    # The Gram route costs T^2 (d_in + d_out) per sample; materializing G_b costs T d_in d_out.
    if resolve_backend(backend, [acts, grads]) == "torch" or (t > 1 and t * t > d_in * d_out):
        return reference.ghost_norms(acts, grads)
    from .triton_kernels import factored

    return factored.ghost_norms(acts, grads)
