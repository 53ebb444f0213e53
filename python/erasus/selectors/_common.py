"""Plumbing shared by the score-, gradient- and learning-based selectors.

Ranking by a per-sample score, model outputs / last-layer inputs over a dataset, exact per-sample
gradients and Hessian-vector products through :mod:`torch.func`, and a :class:`Selector` base whose
``select`` also accepts per-call inputs (validation data, a target set ...) next to ``features``.
torch is imported inside the functions that need it so that importing the selectors stays light.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

import numpy as np

from ..errors import ErasusTypeError, InvalidInputError, NonFiniteError
from ..selection import Selection, check_values
from .base import Selector

__all__ = [
    "ContextSelector",
    "plain",
    "as_array",
    "as_labels",
    "eval_mode",
    "exact_hessian",
    "head_inputs",
    "hvp_fn",
    "mean_grad",
    "model_outputs",
    "per_sample_grads",
    "rank",
    "score_selection",
    "trainable_subset",
]


def rank(scores: np.ndarray, *, largest: bool = True) -> np.ndarray:
    """Indices sorting ``scores`` (descending when ``largest``); ties keep index order, so ranks are deterministic."""
    s = np.asarray(scores, dtype=np.float64)
    return np.argsort(-s if largest else s, kind="stable")


def plain(value: Any) -> Any:
    """``value`` with numpy arrays / scalars turned into lists / Python numbers, so ``Selection.to_dict()`` is JSON."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def score_selection(scores: np.ndarray, k: int, *, largest: bool = True, metadata: dict[str, Any] | None = None) -> Selection:
    """The ``k`` best rows by ``scores``, ranked, unit weights; ``metadata['scores']`` holds every score (a list)."""
    scores = np.asarray(scores, dtype=np.float64)
    if not np.all(np.isfinite(scores)):
        bad = int(np.flatnonzero(~np.isfinite(scores))[0])
        raise InvalidInputError(f"the selector's score of sample {bad} is {scores[bad]}; check the features for NaN/inf")
    order = rank(scores, largest=largest)[:k]
    meta = {"scores": scores, "largest": largest}
    meta.update(metadata or {})
    return Selection(order, np.ones(k, dtype=np.float32), gains=scores[order], metadata=plain(meta))


def as_labels(labels: Any, n: int, *, what: str = "labels") -> np.ndarray:
    """Integer class ids of shape ``(n,)``."""
    if labels is None:
        raise InvalidInputError(f"{what} are required: pass {what}= (integer class ids, shape ({n},))")
    y = np.asarray(labels.detach().cpu() if hasattr(labels, "detach") else labels)
    if y.shape != (n,):
        raise InvalidInputError(f"{what} must have shape ({n},), got {y.shape}")
    if y.dtype.kind not in "iu":
        if y.dtype.kind == "f" and not np.all(np.isfinite(y)):
            bad = int(np.flatnonzero(~np.isfinite(y))[0])
            raise NonFiniteError(f"{what} contain a non-finite value ({y[bad]}) at index {bad}; expected class ids")
        if y.dtype.kind == "f" and np.all(y == np.round(y)):
            return y.astype(np.int64)
        raise ErasusTypeError(f"{what} must be integer class ids, got dtype {y.dtype}")
    if n and y.min() < 0:
        raise InvalidInputError(f"{what} must be non-negative class ids, got {y.min()}")
    return y.astype(np.int64)


def as_array(x: Any, *, name: str, ndim: int | None = 2) -> np.ndarray:
    """A float64 numpy copy of a numpy array / torch tensor with a finite check and an optional rank check."""
    if x is None:
        raise InvalidInputError(f"{name} is required")
    if hasattr(x, "detach"):
        check_values(x, name=name, limit=np.inf)  # on the tensor's device, before the float64 host copy
        x = x.detach().cpu().double().numpy()
    elif np.iscomplexobj(x):
        raise ErasusTypeError(f"{name} must be real, got complex values; pass .real or np.abs()")
    try:
        a = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ErasusTypeError(f"{name} must be a numeric array or tensor, got {type(x).__name__}") from exc
    if ndim is not None and a.ndim != ndim:
        raise InvalidInputError(f"{name} must be {ndim}-D, got shape {a.shape}")
    if a.size == 0:
        raise InvalidInputError(f"{name} is empty (shape {a.shape})")
    check_values(a, name=name, limit=np.inf)  # float64 arithmetic: only NaN / inf are refused here
    return a


class ContextSelector(Selector):
    """A :class:`Selector` whose ``select`` also takes per-call inputs (``val_features``, ``target`` ...).

    Subclasses turn ``model=``/``data=`` into features in :meth:`_from_model`, list the per-call inputs they
    accept in ``call_inputs`` and read them from ``self._context`` inside ``_select``.
    """

    call_inputs: ClassVar[tuple[str, ...]] = ()

    def __init__(self, *, seed: int = 0, **options: Any) -> None:
        super().__init__(seed=seed, **options)
        self._context: dict[str, Any] = {}

    def _from_model(self, model: Any, data: Any, *, task: Any, context: dict[str, Any]) -> tuple[Any, Any]:
        """Features (and labels, or None) computed from ``model`` on ``data``."""
        raise InvalidInputError(f"the {self.registry_name!r} selector needs features=...; it cannot compute them from a model")

    def select(
        self,
        k: int | None = None,
        *,
        features: Any = None,
        model: Any = None,
        data: Any = None,
        ratio: float | None = None,
        labels: Any = None,
        task: Any = None,
        **inputs: Any,
    ) -> Selection:
        """Select ``k`` (or ``ratio``) rows from ``features``, or from features computed from ``model`` on ``data``.

        ``inputs`` are the selector's per-call inputs (``call_inputs``, see its docstring), e.g. ``val_features``.
        """
        unknown = sorted(key for key in inputs if key not in self.call_inputs and not key.startswith("_"))
        if unknown:
            accepted = ", ".join(self.call_inputs) or "none"
            raise InvalidInputError(f"{self.registry_name or type(self).__name__}.select() got unexpected inputs "
                                    f"{unknown}; its per-call inputs are: {accepted}")
        needs_model = sorted(key for key in inputs if key in ("target", "val_data", "hessian_data"))
        if features is not None and needs_model:
            raise InvalidInputError(f"{needs_model} are data for the model path (model=, data=); with features= pass "
                                    "precomputed target_features= / val_features= instead")
        context = dict(inputs)
        if features is None:
            if model is None or data is None:
                raise InvalidInputError(f"{self.registry_name or type(self).__name__}.select() needs features=..., "
                                        "or both model=... and data=...")
            features, model_labels = self._from_model(model, data, task=task, context=context)
            if labels is None:
                labels = model_labels
        self._context = context
        try:
            return Selector.select(self, k, features=features, ratio=ratio, labels=labels)
        finally:
            self._context = {}


# --------------------------------------------------------------------------------------------- torch helpers


@contextlib.contextmanager
def eval_mode(model: Any) -> Iterator[None]:
    """Put ``model`` in eval mode for the block and restore each module's own training flag afterwards."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, flag in flags:
            m.training = flag


def _task_and_loader(model: Any, data: Any, task: Any, batch_size: int | None) -> tuple[Any, Any]:
    from ..data import as_loader
    from ..tasks import get_task, infer_task

    t = infer_task(model, data) if task is None else get_task(task)
    return t, as_loader(data, batch_size=batch_size, shuffle=False)


def _device_of(model: Any) -> Any:
    p = next(iter(model.parameters()), None)
    return None if p is None else p.device


def model_outputs(model: Any, data: Any, *, task: Any = None, batch_size: int | None = None) -> tuple[Any, Any]:
    """``(outputs, labels)`` over ``data`` in order: the task's outputs (CPU) and labels (or None without them)."""
    import torch

    t, loader = _task_and_loader(model, data, task, batch_size)
    device = _device_of(model)
    outs, ys = [], []
    with eval_mode(model), torch.no_grad():
        for batch in loader:
            batch = t.to_device(batch, device)
            outs.append(t.outputs(model, batch).detach().cpu())
            try:
                ys.append(t.labels(batch).cpu())
            except InvalidInputError:
                pass  # unlabeled data: scores that need labels say so themselves
    if not outs:
        raise InvalidInputError("data is empty")
    return torch.cat(outs), (torch.cat(ys) if len(ys) == len(outs) else None)


def _last_linear(model: Any, layer: str | None) -> tuple[str, Any]:
    import torch

    named = dict(model.named_modules())
    if layer is not None:
        if layer not in named or not isinstance(named[layer], torch.nn.Linear):
            linears = [n for n, m in named.items() if isinstance(m, torch.nn.Linear)]
            raise InvalidInputError(f"layer {layer!r} is not an nn.Linear of the model; its linear layers are {linears}")
        return layer, named[layer]
    for name, module in reversed(list(named.items())):
        if isinstance(module, torch.nn.Linear):
            return name, module
    raise InvalidInputError(f"{type(model).__name__} has no nn.Linear layer; pass features= (embeddings) instead")


def head_inputs(model: Any, data: Any, *, task: Any = None, layer: str | None = None,
                batch_size: int | None = None) -> dict[str, Any]:
    """Inputs and outputs of the model's last ``nn.Linear`` (or ``layer``) over ``data``, plus labels.

    Returns ``{"embeddings": (n, d), "logits": (n, C), "labels": (n,) | None, "weight": (C, d), "bias": (C,) | None,
    "layer": name}`` as float64 numpy arrays.
    """
    import torch

    name, linear = _last_linear(model, layer)
    t, loader = _task_and_loader(model, data, task, batch_size)
    device = _device_of(model)
    embs, logits, ys = [], [], []
    has_labels = True

    def hook(_module: Any, args: tuple[Any, ...], out: Any) -> None:
        embs.append(args[0].detach().reshape(-1, args[0].shape[-1]).cpu())
        logits.append(out.detach().reshape(-1, out.shape[-1]).cpu())

    handle = linear.register_forward_hook(hook)
    try:
        with eval_mode(model), torch.no_grad():
            for batch in loader:
                batch = t.to_device(batch, device)
                t.outputs(model, batch)
                if has_labels:
                    try:
                        ys.append(t.labels(batch).cpu())
                    except InvalidInputError:
                        has_labels = False
    finally:
        handle.remove()
    e, z = torch.cat(embs).double().numpy(), torch.cat(logits).double().numpy()
    y = torch.cat(ys).numpy().astype(np.int64) if has_labels and ys else None
    if y is not None and y.shape[0] != e.shape[0]:
        raise InvalidInputError(f"layer {name!r} sees {e.shape[0]} rows but the data has {y.shape[0]} samples; "
                                "pick a layer applied once per sample")
    return {
        "embeddings": e,
        "logits": z,
        "labels": y,
        "weight": linear.weight.detach().cpu().double().numpy(),
        "bias": None if linear.bias is None else linear.bias.detach().cpu().double().numpy(),
        "layer": name,
    }


def trainable_subset(model: Any, params: str | Sequence[str] | None) -> list[str]:
    """Names of the parameters to differentiate: all trainable ones, ``"last_layer"``, or explicit names."""
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    if params is None:
        names = trainable
    elif params == "last_layer":
        layer, _ = _last_linear(model, None)
        names = [n for n in trainable if n.rsplit(".", 1)[0] == layer or (layer == "" and "." not in n)]
    elif isinstance(params, str):
        names = [params]
    else:
        names = list(params)
    unknown = [n for n in names if n not in dict(model.named_parameters())]
    if unknown:
        raise InvalidInputError(f"unknown parameter names {unknown}; the model has {trainable}")
    if not names:
        raise InvalidInputError("no trainable parameters selected")
    return names


class _Method:
    """An ``nn.Module`` whose forward is another module's method, so ``functional_call`` can run that method."""

    def __new__(cls, model: Any, name: str) -> Any:
        import torch

        class Call(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.m = model

            def forward(self, *args: Any, **kwargs: Any) -> Any:
                return getattr(self.m, name)(*args, **kwargs)

        return Call()


class _Bound:
    """Calls ``model`` with some parameters replaced (``torch.func.functional_call``), for task adapters.

    Methods (e.g. CLIP's ``get_image_features``) run with the replaced parameters too, and parameter attributes
    (``logit_scale``) resolve to their replacement, so adapters that call more than ``forward`` see one model.
    """

    def __init__(self, model: Any, params: dict[str, Any]) -> None:
        self.model, self.params = model, params
        self.config = getattr(model, "config", None)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from torch.func import functional_call

        return functional_call(self.model, self.params, args, kwargs, strict=False)

    def __getattr__(self, name: str) -> Any:
        import torch
        from torch.func import functional_call

        if name.startswith("__") or name in ("model", "params", "config"):
            raise AttributeError(name)
        attr = getattr(self.model, name)
        if isinstance(attr, torch.Tensor):
            key = next((k for k, p in self.model.named_parameters() if p is attr), None)
            return self.params.get(key, attr) if key is not None else attr
        if not callable(attr):
            return attr
        call = _Method(self.model, name)
        params = {f"m.{k}": v for k, v in self.params.items()}
        return lambda *args, **kwargs: functional_call(call, params, args, kwargs, strict=False)


def _flat_loss(model: Any, names: list[str], task: Any) -> tuple[Any, Any, Any]:
    """``(theta0, unflatten, loss(theta, batch) -> per-sample losses)`` over the flattened parameters ``names``."""
    import torch

    params = dict(model.named_parameters())
    shapes = [params[n].shape for n in names]
    sizes = [int(np.prod(s)) for s in shapes]
    theta0 = torch.cat([params[n].detach().reshape(-1) for n in names])

    def unflatten(theta: Any) -> dict[str, Any]:
        return {n: c.reshape(s) for n, c, s in zip(names, torch.split(theta, sizes), shapes)}

    def losses(theta: Any, batch: Any) -> Any:
        return task.per_sample_loss(_Bound(model, unflatten(theta)), batch)

    return theta0, unflatten, losses


def per_sample_grads(model: Any, data: Any, *, task: Any = None, params: str | Sequence[str] | None = None,
                     batch_size: int | None = None) -> tuple[Any, Any]:
    """Exact per-sample loss gradients ``(n, p)`` w.r.t. the flattened ``params`` (``torch.func.vmap``), and labels."""
    import torch
    from torch.func import grad, vmap
    from torch.utils._pytree import tree_map

    t, loader = _task_and_loader(model, data, task, batch_size)
    t = t.separable(model, loader)  # each vmapped sample is a batch of one: its loss must not need the others
    names = trainable_subset(model, params)
    theta0, _, losses = _flat_loss(model, names, t)
    device = theta0.device

    def one(theta: Any, sample: Any) -> Any:
        batch = tree_map(lambda a: a.unsqueeze(0) if isinstance(a, torch.Tensor) else a, sample)
        return losses(theta, batch).sum()

    g_one = vmap(grad(one), in_dims=(None, 0))

    def batch_grads(batch: Any) -> Any:
        try:
            return g_one(theta0, batch)
        except RuntimeError as exc:
            # vmap cannot trace data-dependent control flow (transformers' attention-mask checks); one sample at
            # a time gives the same gradients
            if "vmap" not in str(exc).lower() and "data-dependent" not in str(exc).lower():
                raise
            size = t.batch_size(batch)
            pick = lambda i: tree_map(lambda a: a[i] if isinstance(a, torch.Tensor) and a.ndim and  # noqa: E731
                                      a.shape[0] == size else a, batch)
            return torch.stack([grad(one)(theta0, pick(i)) for i in range(size)])

    out, ys = [], []
    with eval_mode(model):
        for batch in loader:
            batch = t.to_device(batch, device)
            out.append(batch_grads(batch).detach().cpu())
            try:
                ys.append(t.labels(batch).cpu())
            except InvalidInputError:
                pass
    return torch.cat(out), (torch.cat(ys) if len(ys) == len(out) else None)


def mean_grad(model: Any, data: Any, *, task: Any = None, params: str | Sequence[str] | None = None,
              batch_size: int | None = None) -> Any:
    """Gradient of the mean loss over ``data`` w.r.t. the flattened ``params``."""
    import torch

    t, loader = _task_and_loader(model, data, task, batch_size)
    names = trainable_subset(model, params)
    theta0, _, losses = _flat_loss(model, names, t)
    total, n = torch.zeros_like(theta0), 0
    with eval_mode(model):
        for batch in loader:
            batch = t.to_device(batch, theta0.device)
            theta = theta0.clone().requires_grad_(True)
            s = losses(theta, batch).sum()
            total += torch.autograd.grad(s, theta)[0]
            n += t.batch_size(batch)
    return (total / max(n, 1)).cpu()


class _HVP:
    """``hvp(v, b=None)``: Hessian-vector product of the mean loss over all batches, or over batch ``b`` only."""

    def __init__(self, losses: Any, theta0: Any, batches: list[Any], sizes: list[int], model: Any) -> None:
        self.losses, self.theta0, self.batches, self.sizes, self.model = losses, theta0, batches, sizes, model
        self.n_batches = len(batches)

    def __call__(self, v: Any, b: int | None = None) -> Any:
        import torch
        from torch.func import grad, jvp

        v = v.to(self.theta0)
        which = range(self.n_batches) if b is None else [b]
        out = torch.zeros_like(self.theta0)
        with eval_mode(self.model):
            for i in which:
                batch = self.batches[i]

                def total(th: Any, batch: Any = batch) -> Any:
                    return self.losses(th, batch).sum()

                out += jvp(grad(total), (self.theta0,), (v,))[1]
        return (out / sum(self.sizes[i] for i in which)).detach().cpu()


def hvp_fn(model: Any, data: Any, *, task: Any = None, params: str | Sequence[str] | None = None,
           batch_size: int | None = None) -> tuple[_HVP, int]:
    """``(hvp, p)``: exact Hessian-vector products of the mean loss over ``data`` (forward-over-reverse, batched)."""
    t, loader = _task_and_loader(model, data, task, batch_size)
    names = trainable_subset(model, params)
    theta0, _, losses = _flat_loss(model, names, t)
    batches = [t.to_device(b, theta0.device) for b in loader]
    return _HVP(losses, theta0, batches, [t.batch_size(b) for b in batches], model), int(theta0.numel())


def exact_hessian(model: Any, data: Any, *, task: Any = None, params: str | Sequence[str] | None = None,
                  batch_size: int | None = None) -> Any:
    """The ``(p, p)`` Hessian of the mean loss over ``data`` w.r.t. the flattened ``params``."""
    import torch
    from torch.func import hessian

    t, loader = _task_and_loader(model, data, task, batch_size)
    names = trainable_subset(model, params)
    theta0, _, losses = _flat_loss(model, names, t)
    h, n = torch.zeros(theta0.numel(), theta0.numel(), dtype=theta0.dtype), 0
    with eval_mode(model):
        for batch in loader:
            batch = t.to_device(batch, theta0.device)
            h += hessian(lambda th, batch=batch: losses(th, batch).sum())(theta0).detach().cpu()
            n += t.batch_size(batch)
    return h / max(n, 1)
