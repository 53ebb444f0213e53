"""Per-sample gradient features: projected gradients and exact gradient norms, streamed over any data.

Gradients of ``task.per_sample_loss`` come from two routes that give the same numbers:

* **hooks** (opacus-style, :mod:`erasus.features.hooks`) for ``nn.Linear``, ``nn.Conv2d``, ``nn.Embedding`` and
  transformers' ``Conv1D``: one forward/backward per batch, per-sample gradients kept factored;
* **generic** ``torch.func`` (``vmap(grad(functional_call))``) for every other parameter, falling back to a
  per-sample ``autograd.grad`` loop for models whose forward ``vmap`` cannot trace (data-dependent control flow).

Only ``B x (a chunk of parameters)`` per-sample gradient entries are alive at a time (``max_grad_entries``),
so any model size and any number of samples fit in bounded memory.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_map
from tqdm.auto import tqdm

from .. import kernels as K
from ..data import as_loader, num_samples
from ..errors import ErasusTypeError, InvalidInputError
from ..kernels._dispatch import check_seed
from ..kernels.reference import derive_seed, jl_matrix
from ..tasks import Task, get_task, infer_task
from .hooks import Factors, run_with_capture, supported

__all__ = ["per_sample_gradients", "per_sample_grad_norms"]

_PROJECTIONS = ("rademacher", "gaussian", "kronecker")
_METHODS = ("auto", "hooks", "vmap", "loop")


# ---------------------------------------------------------------------------------------------- set-up


def _selected_params(model: nn.Module, layers: Sequence[str] | str | None) -> list[tuple[str, nn.Parameter]]:
    named = list(model.named_parameters())
    if layers is None:
        chosen = [(n, p) for n, p in named if p.requires_grad]
    else:
        names = [layers] if isinstance(layers, str) else list(layers)
        modules = dict(model.named_modules())
        unknown = [n for n in names if n not in modules and n not in dict(named)]
        if unknown:
            raise InvalidInputError(f"layers {unknown} are not module or parameter names of {type(model).__name__}")
        chosen = [(n, p) for n, p in named if any(n == s or n.startswith(s + ".") or not s for s in names)]
    if not chosen:
        raise InvalidInputError("no parameters selected: the model has none that require grad, or `layers` "
                                "matched none")
    return chosen


def _hookable_modules(model: nn.Module, selected: set[int], excluded: frozenset[int] | set[int] = frozenset()
                      ) -> tuple[list[nn.Module], set[int]]:
    """Supported modules whose weight is selected, and the ids of every parameter they cover."""
    mods, covered = [], set()
    uses: dict[int, list[nn.Module]] = {}
    for m in model.modules():
        for p in m.parameters(recurse=False):
            uses.setdefault(id(p), []).append(m)
    for m in model.modules():
        if not supported(m) or id(m.weight) not in selected or id(m) in excluded:
            continue
        bias = getattr(m, "bias", None)
        if bias is not None and id(bias) not in selected:
            continue
        mods.append(m)
    # A parameter is covered only if every module using it is hooked (tied weights sum their uses).
    hooked = {id(m) for m in mods}
    for m in mods:
        for p in m.parameters(recurse=False):
            if all(id(u) in hooked for u in uses[id(p)]):
                covered.add(id(p))
    mods = [m for m in mods if id(m.weight) in covered]
    return mods, covered


@contextlib.contextmanager
def _prepared(model: nn.Module, params: list[nn.Parameter]) -> Iterator[None]:
    """Eval mode (no dropout / batch-norm updates) and grad enabled on the chosen parameters; restored after."""
    modes = [(m, m.training) for m in model.modules()]
    flags = [(p, p.requires_grad) for p in params]
    model.eval()
    for p in params:
        p.requires_grad_(True)
    try:
        with torch.enable_grad():
            yield
    finally:
        for m, training in modes:
            m.training = training
        for p, flag in flags:
            p.requires_grad_(flag)


def _resolve(model: nn.Module, data: Any, task: Any, device: Any, batch_size: int) -> tuple[nn.Module, Task, Any,
                                                                                             torch.device, int]:
    if not isinstance(model, nn.Module):
        raise ErasusTypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    loader = as_loader(data, batch_size=batch_size)
    n = num_samples(loader)
    if n == 0:
        raise InvalidInputError("data is empty: there are no samples to compute features for")
    task = infer_task(model, loader) if task is None else get_task(task)
    first = next(iter(model.parameters()), None)
    current = first.device if first is not None else torch.device("cpu")
    target = torch.device(device) if device is not None else current
    if target != current:
        model = copy.deepcopy(model).to(target)  # never move the caller's model
    return model, task.separable(model, loader), loader, target, n


def _has_strings(batch: Any, size: int) -> bool:
    if isinstance(batch, (tuple, list)):
        if len(batch) == size and batch and all(isinstance(v, str) for v in batch):
            return True
        return any(_has_strings(v, size) for v in batch)
    if isinstance(batch, dict):
        return any(_has_strings(v, size) for v in batch.values())
    return False


def _slice(batch: Any, start: int, stop: int, size: int) -> Any:
    if isinstance(batch, (tuple, list)) and len(batch) == size and all(isinstance(v, str) for v in batch):
        return type(batch)(batch[start:stop])  # per-sample strings (a diffusion batch's prompts)
    if isinstance(batch, (tuple, list)) and not hasattr(batch, "_fields"):
        return type(batch)(_slice(v, start, stop, size) for v in batch)
    if isinstance(batch, dict):
        return {k: _slice(v, start, stop, size) for k, v in batch.items()}
    return tree_map(lambda t: t[start:stop] if isinstance(t, torch.Tensor) and t.ndim and t.shape[0] == size else t,
                    batch)


# ------------------------------------------------------------------------------------- generic route


class _TaskLoss(nn.Module):
    """``functional_call`` target: per-sample losses of the wrapped model under the task adapter."""

    def __init__(self, model: nn.Module, task: Task) -> None:
        super().__init__()
        self.model = model
        self.task = task

    def forward(self, batch: Any) -> torch.Tensor:
        return self.task.per_sample_loss(self.model, batch)


def _generic_grads(model: nn.Module, task: Task, batch: Any, size: int, chunk: list[tuple[str, nn.Parameter]],
                   method: str) -> list[torch.Tensor]:
    """Per-sample gradients (B, *p.shape) of the parameters in ``chunk``."""
    wrapper = _TaskLoss(model, task)
    # vmap maps tensors only: per-sample strings (prompts) take the per-sample loop
    if method != "loop" and not _has_strings(batch, size):
        frozen = {"model." + n: t.detach() for n, t in model.named_parameters() if all(t is not p for _, p in chunk)}
        frozen.update({"model." + n: b for n, b in model.named_buffers()})
        chunk_params = {"model." + n: p.detach() for n, p in chunk}

        def one(params: dict[str, torch.Tensor], sample: Any) -> torch.Tensor:
            single = tree_map(lambda t: t.unsqueeze(0) if isinstance(t, torch.Tensor) else t, sample)
            return torch.func.functional_call(wrapper, {**frozen, **params}, (single,), tie_weights=False)[0]

        in_dims = tree_map(lambda t: 0 if isinstance(t, torch.Tensor) and t.ndim and t.shape[0] == size else None,
                           batch)
        try:
            grads = torch.func.vmap(torch.func.grad(one), in_dims=(None, in_dims))(chunk_params, batch)
            return [grads["model." + n] for n, _ in chunk]
        except RuntimeError as exc:
            # vmap cannot trace data-dependent Python control flow (e.g. `if tensor.any():` in a loss);
            # the per-sample loop below computes the same gradients.
            if method == "vmap" or "vmap" not in str(exc).lower() and "data-dependent" not in str(exc).lower():
                raise
    tensors = [p for _, p in chunk]
    rows: list[list[torch.Tensor]] = [[] for _ in chunk]
    for i in range(size):
        loss = task.per_sample_loss(model, _slice(batch, i, i + 1, size))[0]
        grads = torch.autograd.grad(loss, tensors, allow_unused=True)
        for r, g, p in zip(rows, grads, tensors):
            r.append(torch.zeros_like(p) if g is None else g)
    return [torch.stack(r) for r in rows]


def _param_chunks(params: list[tuple[str, nn.Parameter]], batch: int, budget: int
                  ) -> Iterator[list[tuple[str, nn.Parameter]]]:
    chunk: list[tuple[str, nn.Parameter]] = []
    entries = 0
    for name, p in params:
        if chunk and entries + batch * p.numel() > budget:
            yield chunk
            chunk, entries = [], 0
        chunk.append((name, p))
        entries += batch * p.numel()
    if chunk:
        yield chunk


def _generic_stream(model: nn.Module, task: Task, batch: Any, size: int, params: list[tuple[str, nn.Parameter]],
                    method: str, budget: int) -> Iterator[tuple[nn.Parameter, int, int, torch.Tensor]]:
    """Yield ``(param, start, stop, grads (stop-start, numel))``: per-sample gradients of parameter chunks for
    sample sub-ranges, never more than ``budget`` entries at once (beyond one sample of one parameter)."""
    for chunk in _param_chunks(params, size, budget):
        per_sample = sum(p.numel() for _, p in chunk)
        step = max(1, min(size, budget // max(per_sample, 1)))
        for start in range(0, size, step):
            stop = min(size, start + step)
            grads = _generic_grads(model, task, _slice(batch, start, stop, size), stop - start, chunk, method)
            for (_, p), g in zip(chunk, grads):
                yield p, start, stop, g.reshape(stop - start, -1)


# -------------------------------------------------------------------------------- projection plan


def _block_shape(size: int) -> tuple[int, int]:
    """(r_rows, r_cols) with r_rows * r_cols == size and r_rows the divisor closest to sqrt(size)."""
    best = 1
    for r in range(1, math.isqrt(size) + 1):
        if size % r == 0:
            best = r
    return best, size // best


class _Projector:
    """Accumulates one batch's projected features from gradients delivered in any order and pieces."""

    def __init__(self, params: list[tuple[str, nn.Parameter]], hooked: list[nn.Module], proj_dim: int, seed: int,
                 projection: str, backend: str) -> None:
        self.proj_dim, self.seed, self.projection, self.backend = proj_dim, seed, projection, backend
        self.kron_blocks: dict[int, tuple[int, int, int, int]] = {}  # weight id -> (col0, r_rows, r_cols, seed)
        dense = params
        if projection == "kronecker":
            weights: list[Any] = []
            for m in hooked:
                if id(m.weight) not in [id(w) for w in weights]:
                    weights.append(m.weight)
            weight_ids = {id(w) for w in weights}
            dense = [(n, p) for n, p in params if id(p) not in weight_ids]
            n_blocks = len(weights) + (1 if dense else 0)
            if n_blocks > proj_dim:
                raise InvalidInputError(f"projection='kronecker' needs proj_dim >= {n_blocks} (one block per layer)")
            sizes = [proj_dim // n_blocks + (1 if i < proj_dim % n_blocks else 0) for i in range(n_blocks)]
            col = 0
            for i, w in enumerate(weights):
                r_rows, r_cols = _block_shape(sizes[i])
                self.kron_blocks[id(w)] = (col, r_rows, r_cols, derive_seed(seed, i + 2))
                col += sizes[i]
            self.dense_cols = (col, proj_dim)
            self.dense_kind, self.dense_seed = "rademacher", derive_seed(seed, 1)
        else:
            self.dense_cols = (0, proj_dim)
            self.dense_kind, self.dense_seed = projection, seed
        self.row_offset: dict[int, int] = {}
        off = 0
        for _, p in dense:
            self.row_offset[id(p)] = off
            off += p.numel()

    def start(self, size: int, device: torch.device) -> None:
        self.out = torch.zeros(size, self.proj_dim, dtype=torch.float32, device=device)

    def add_dense(self, p: torch.Tensor, start: int, stop: int, grads: torch.Tensor) -> None:
        c0, c1 = self.dense_cols
        self.out[start:stop, c0:c1] += K.jl_project(grads, c1 - c0, seed=self.dense_seed, kind=self.dense_kind,
                                                    row_offset=self.row_offset[id(p)], backend=self.backend)

    def add_factors(self, f: Factors, budget: int) -> None:
        size = f.v.shape[0]
        if id(f.weight) in self.kron_blocks:
            col, r_rows, r_cols, seed = self.kron_blocks[id(f.weight)]
            if f.u is not None:
                block = K.kronecker_project(f.v, f.u, r_cols, r_rows, seed=seed, backend=self.backend)
            else:
                assert f.ids is not None
                v_p = K.jl_project(f.v.reshape(-1, f.v.shape[-1]), r_cols, seed=derive_seed(seed, 0),
                                   backend=self.backend).reshape(size, -1, r_cols)
                u_p = jl_matrix(derive_seed(seed, 1), f.ids.reshape(-1), r_rows).to(v_p.device)
                u_p = (u_p * (1.0 / math.sqrt(r_rows))).reshape(size, -1, r_rows)
                block = torch.bmm(u_p.transpose(1, 2), v_p).reshape(size, -1)
            self.out[:, col:col + r_rows * r_cols] += block
        else:
            step = max(1, min(size, budget // max(f.weight.numel(), 1)))
            for s in range(0, size, step):
                piece = f.samples(s, s + step)
                self.add_dense(f.weight, s, s + piece.v.shape[0], piece.dense().reshape(piece.v.shape[0], -1))
        if f.bias is not None and f.bias_param is not None:
            self.add_dense(f.bias_param, 0, size, f.bias.float())


# --------------------------------------------------------------------------------------- public API


def _check_common(proj_dim: int, projection: str, method: str, max_grad_entries: int) -> None:
    if isinstance(proj_dim, bool) or not isinstance(proj_dim, int) or proj_dim < 1:
        raise InvalidInputError(f"proj_dim must be a positive int, got {proj_dim!r}")
    if projection not in _PROJECTIONS:
        raise InvalidInputError(f"projection must be one of {_PROJECTIONS}, got {projection!r}")
    if method not in _METHODS:
        raise InvalidInputError(f"method must be one of {_METHODS}, got {method!r}")
    if isinstance(max_grad_entries, bool) or not isinstance(max_grad_entries, int) or max_grad_entries < 1:
        raise InvalidInputError(f"max_grad_entries must be a positive int, got {max_grad_entries!r}")


def _not_per_sample(model: nn.Module, modules: list[nn.Module], task: Task, batch: Any) -> set[int]:
    """Modules whose input or output in a forward pass is not batch-major (e.g. GPT-2's position embedding,
    called on (1, T) ids and broadcast): the backward hooks cannot separate their samples."""
    size = task.batch_size(batch)
    bad: set[int] = set()

    def hook(module: nn.Module, args: tuple, output: Any) -> None:
        inp = args[0] if args else None
        for t in (inp, output):
            if not isinstance(t, torch.Tensor) or t.ndim == 0 or t.shape[0] != size:
                bad.add(id(module))

    handles = [m.register_forward_hook(hook) for m in modules]
    try:
        with torch.no_grad():
            task.per_sample_loss(model, batch)
    finally:
        for h in handles:
            h.remove()
    return bad


def _routes(model: nn.Module, params: list[tuple[str, nn.Parameter]], method: str, task: Task, loader: Any,
            device: torch.device) -> tuple[list[nn.Module], list[tuple[str, nn.Parameter]]]:
    if method in ("vmap", "loop"):
        return [], params
    selected = {id(p) for _, p in params}
    hooked, _ = _hookable_modules(model, selected)
    excluded = _not_per_sample(model, hooked, task, task.to_device(next(iter(loader)), device)) if hooked else set()
    hooked, covered = _hookable_modules(model, selected, excluded)
    rest = [(n, p) for n, p in params if id(p) not in covered]
    if method == "hooks" and rest:
        raise InvalidInputError(f"method='hooks' covers Linear/Conv2d/Embedding/Conv1D layers only; these "
                                f"parameters need method='auto' or 'vmap': {[n for n, _ in rest][:5]}")
    return hooked, rest


def per_sample_gradients(model: nn.Module, data: Any, *, task: Any = None, proj_dim: int = 1024,
                         projection: str = "rademacher", seed: int = 0, layers: Sequence[str] | str | None = None,
                         batch_size: int = 64, device: Any = None, method: str = "auto",
                         max_grad_entries: int = 1 << 25, backend: str = "auto",
                         progress: bool = True) -> torch.Tensor:
    """Randomly projected per-sample gradients ``phi_i = P^T grad_theta loss_i``, one row per sample.

    Projections: ``"rademacher"`` / ``"gaussian"`` dense JL (Achlioptas 2003; entries +-1 or N(0, 1), scaled by
    1/sqrt(p), generated from Philox by :func:`erasus.kernels.jl_project`, the row index being the position
    in the flattened selected-parameter vector in ``model.named_parameters()`` order), so inner products and
    norms of gradients are kept in expectation. ``"kronecker"``: LoGra (Choe et al., 2024), each hooked
    layer's gradient ``G = sum_t g_t a_t^T`` projected as ``P_out^T G P_in`` from projected activations and
    output gradients (never forming G), blocks concatenated; parameters outside such layers (biases, norms)
    get a dense Rademacher block.

    Args:
        data: DataLoader / Dataset / tensor pair ``(x, y)``; streamed in ``batch_size`` batches.
        task: task adapter or name (default :func:`erasus.tasks.infer_task`); loss = ``task.per_sample_loss``.
        layers: module or parameter names to take gradients of (default: all parameters requiring grad).
        method: ``"auto"`` (hooks where supported, torch.func elsewhere), ``"hooks"``, ``"vmap"``, ``"loop"``.
        max_grad_entries: cap on per-sample gradient entries materialized at once.
    Returns:
        float32 (n, proj_dim) on CPU, in data order.
    """
    _check_common(proj_dim, projection, method, max_grad_entries)
    check_seed(seed)
    model, task, loader, device, n = _resolve(model, data, task, device, batch_size)
    params = _selected_params(model, layers)
    with _prepared(model, [p for _, p in params]):
        hooked, rest = _routes(model, params, method, task, loader, device)
    projector = _Projector(params, hooked, proj_dim, seed, projection, backend)
    out = torch.empty(n, proj_dim, dtype=torch.float32)
    row = 0
    with _prepared(model, [p for _, p in params]):
        for batch in tqdm(loader, desc="per-sample gradients", disable=not progress, leave=False):
            batch = task.to_device(batch, device)
            size = task.batch_size(batch)
            projector.start(size, device)
            if hooked:
                _, factors = run_with_capture(hooked, lambda: task.per_sample_loss(model, batch))
                for f in factors:
                    projector.add_factors(f, max_grad_entries)
            for p, start, stop, g in _generic_stream(model, task, batch, size, rest, method, max_grad_entries):
                projector.add_dense(p, start, stop, g)
            out[row:row + size] = projector.out.cpu()
            row += size
    return out[:row]


def _factor_sq_norms(f: Factors, backend: str) -> torch.Tensor:
    if f.u is not None:
        return K.ghost_norms(f.v, f.u, backend=backend)
    # one-hot rows: (u_t . u_s) = [id_t == id_s]
    assert f.ids is not None
    same = (f.ids[:, :, None] == f.ids[:, None, :]).float()
    v = f.v.float()
    return (same * torch.bmm(v, v.transpose(1, 2))).sum((1, 2))


def per_sample_grad_norms(model: nn.Module, data: Any, *, task: Any = None,
                          layers: Sequence[str] | str | None = None, batch_size: int = 64, device: Any = None,
                          method: str = "auto", max_grad_entries: int = 1 << 25, backend: str = "auto",
                          progress: bool = True) -> torch.Tensor:
    """Exact per-sample gradient norms ``||grad_theta loss_i||_2``, float32 (n,) on CPU.

    Hooked layers use the ghost-norm identity ``||sum_t g_t a_t^T||_F^2 = sum_{t,s} (a_t.a_s)(g_t.g_s)``
    (Li et al., ICLR 2022) through :func:`erasus.kernels.ghost_norms`, never materializing the gradient;
    tied weights and all other parameters are materialized in bounded chunks (torch.func / hooks).
    """
    _check_common(1, "rademacher", method, max_grad_entries)
    model, task, loader, device, n = _resolve(model, data, task, device, batch_size)
    params = _selected_params(model, layers)
    with _prepared(model, [p for _, p in params]):
        hooked, rest = _routes(model, params, method, task, loader, device)
    out = torch.empty(n, dtype=torch.float32)
    row = 0
    with _prepared(model, [p for _, p in params]):
        for batch in tqdm(loader, desc="per-sample gradient norms", disable=not progress, leave=False):
            batch = task.to_device(batch, device)
            size = task.batch_size(batch)
            sq = torch.zeros(size, dtype=torch.float32, device=device)
            if hooked:
                _, factors = run_with_capture(hooked, lambda: task.per_sample_loss(model, batch))
                shared: dict[int, list[Factors]] = {}
                for f in factors:
                    if f.bias is not None:
                        sq += f.bias.float().square().sum(1)
                    if sum(g.weight is f.weight for g in factors) == 1:
                        sq += _factor_sq_norms(f, backend)
                    else:
                        shared.setdefault(id(f.weight), []).append(f)
                for uses in shared.values():
                    # a weight used more than once: the norm of the sum needs the gradient itself, built a few
                    # samples at a time
                    step = max(1, min(size, max_grad_entries // max(uses[0].weight.numel(), 1)))
                    for s in range(0, size, step):
                        grad = torch.stack([f.samples(s, s + step).dense() for f in uses]).sum(0)
                        sq[s:s + step] += grad.reshape(grad.shape[0], -1).square().sum(1)
            for _, start, stop, g in _generic_stream(model, task, batch, size, rest, method, max_grad_entries):
                sq[start:stop] += g.float().square().sum(1)
            out[row:row + size] = sq.sqrt().cpu()
            row += size
    return out[:row]
