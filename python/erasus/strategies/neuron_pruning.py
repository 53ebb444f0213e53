"""Prune the units that the forget set activates far more than the retain set (selective pruning)."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, cast

import torch

from ..errors import InvalidInputError
from ..registry import register_strategy
from ..tasks import Task
from .base import Run, UnlearningStrategy

__all__ = ["NeuronPruning", "MaskBased", "mean_input_activation"]

_CONV = (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)


def _is_hf_conv1d(m: torch.nn.Module) -> bool:
    """transformers' ``Conv1D`` (GPT-2's projections): a Linear with a transposed ``(in, out)`` weight."""
    return type(m).__name__ == "Conv1D" and type(m).__module__.startswith("transformers")


def _prunable(m: torch.nn.Module) -> bool:
    return isinstance(m, (torch.nn.Linear, *_CONV)) or _is_hf_conv1d(m)


def _attention_mask(batch: Any) -> torch.Tensor | None:
    if isinstance(batch, Mapping) and isinstance(batch.get("attention_mask"), torch.Tensor):
        return batch["attention_mask"]
    return None


def mean_input_activation(
    model: torch.nn.Module, layers: dict[str, torch.nn.Module], batches: Iterable[tuple[Any, torch.Tensor | None]],
    task: Task,
) -> dict[str, torch.Tensor]:
    """Per input unit of each layer, the mean ``|a|`` of what the layer reads: feature ``j`` of the last axis for
    a Linear (any number of token / position axes), channel ``j`` of axis 1 for a Conv, averaged over every
    other axis, i.e. over samples and tokens / positions: ``sum_i w_i sum_t |a_itj| / sum_i w_i T_i``. Padding
    tokens (``attention_mask == 0`` of a dict batch) are left out, so batches may have any sequence length."""
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, float] = {}
    current: dict[str, Any] = {}

    def hook(name: str, conv: bool):
        def fn(_m: torch.nn.Module, args: tuple[Any, ...]) -> None:
            a = args[0].detach().abs().double()
            b = a.shape[0]
            if conv:
                per_sample = a.reshape(b, a.shape[1], -1).sum(2)  # (B, C)
                tokens = torch.full((b,), float(a[0, 0].numel()), dtype=torch.float64, device=a.device)
            else:
                flat = a.reshape(b, -1, a.shape[-1])  # (B, T, F)
                mask = current["mask"]
                if mask is not None and a.ndim == 3 and tuple(mask.shape) == tuple(a.shape[:2]):
                    m = mask.to(flat.device, torch.float64)
                    per_sample, tokens = (flat * m[:, :, None]).sum(1), m.sum(1)
                else:
                    per_sample = flat.sum(1)
                    tokens = torch.full((b,), float(flat.shape[1]), dtype=torch.float64, device=a.device)
            w = current["w"]
            if w is not None:
                wd = w.to(a.device, torch.float64)
                per_sample, tokens = per_sample * wd[:, None], tokens * wd
            sums[name] = sums.get(name, 0) + per_sample.sum(0)
            counts[name] = counts.get(name, 0.0) + float(tokens.sum())

        return fn

    handles = [m.register_forward_pre_hook(hook(n, isinstance(m, _CONV))) for n, m in layers.items()]
    try:
        model.eval()
        with torch.no_grad():
            for batch, w in batches:
                current["w"], current["mask"] = w, _attention_mask(batch)
                task.outputs(model, batch)
    finally:
        for h in handles:
            h.remove()
    missing = [n for n in layers if n not in sums]
    if missing:
        raise InvalidInputError(f"layers {missing} were never called in the model's forward pass")
    if any(c == 0 for c in counts.values()):
        raise InvalidInputError("no sample with positive weight (or no unpadded token) reached the chosen layers")
    return {n: s / counts[n] for n, s in sums.items()}


def _zero_input_units(m: torch.nn.Module, idx: torch.Tensor) -> None:
    """Remove input units ``idx`` from what ``m`` computes: zero the weights that read them."""
    w = cast(torch.Tensor, m.weight)
    idx = idx.to(w.device)
    if _is_hf_conv1d(m):
        w[idx, :] = 0
    elif isinstance(m, _CONV):
        in_per_group, out_per_group = w.shape[1], w.shape[0] // m.groups
        for j in idx.tolist():
            g = j // in_per_group
            w[g * out_per_group : (g + 1) * out_per_group, j % in_per_group] = 0
    else:
        w[:, idx] = 0


def _input_width(m: torch.nn.Module) -> int:
    if _is_hf_conv1d(m):
        return int(cast(torch.Tensor, m.weight).shape[0])
    if isinstance(m, _CONV):
        return int(m.in_channels)
    return int(cast(torch.nn.Linear, m).in_features)


@register_strategy("neuron_pruning")
class NeuronPruning(UnlearningStrategy):
    """Selective pruning (Pochinkov & Schoots, "Dissecting Language Models: Machine Unlearning via Selective
    Pruning", 2024; official code nickypro/selective-pruning, ``exp4-comparison/sp.py``).

    A neuron is scored by its activations *after* the nonlinearity, which is what the next layer reads (the
    paper's ``mlp_pre_out`` / ``attn_pre_out``: the inputs of the MLP and attention output projections). So
    each chosen layer's *input* unit ``j`` gets ``a_j(D) = E_{D, tokens} |x_j|`` (mean over samples and every
    token / spatial position, forget samples weighted by ``w_i``; see :func:`mean_input_activation`) and the
    score ``s_j = a_j(D_f) / (a_j(D_r) + eps)``; the top ``ratio`` of all scored units across the chosen layers
    (one global ranking, as the code's ``get_top_frac``) is deleted by zeroing the weights that read them, so
    they contribute exactly nothing downstream. Reading the post-activation input also makes Conv + BatchNorm
    right: zeroing a conv's output channel before BatchNorm would leave ``beta - gamma * mu / sigma``, not 0.

    ``layers``: module names or ``fnmatch`` patterns of Linear / Conv / transformers ``Conv1D`` layers whose
    inputs are scored. Default: every such layer but the first (whose inputs are the data). For a transformer
    name the paper's layers, e.g. ``["*.mlp.down_proj", "*.self_attn.o_proj"]`` (LLaMA) or
    ``["*.mlp.c_proj", "*.attn.c_proj"]`` (GPT-2). Deviation: the code ranks MLP and attention neurons
    separately (``frac`` each); here one ranking spans the given layers. Defaults: ``ratio = 0.03`` (the
    comparison script's ``frac``), ``eps = 1e-5`` (as the code).
    """

    data_parallel = False

    defaults = {"ratio": 0.03, "layers": None, "eps": 1e-5}
    retain = "required"
    gradient_based = False

    def _unlearn(
        self, model: torch.nn.Module, run: Run, *, ratio: float, layers: Sequence[str] | None, eps: float
    ) -> torch.nn.Module:
        if not 0.0 < ratio < 1.0:
            raise InvalidInputError(f"ratio must be in (0, 1), got {ratio}")
        if not eps > 0:
            raise InvalidInputError(f"eps must be positive, got {eps}")
        chosen = self._choose(model, layers)
        act_f = mean_input_activation(model, chosen, run.forget_epoch(shuffle=False), run.task)
        act_r = mean_input_activation(model, chosen, ((b, None) for b in run.retain_epoch(shuffle=False)), run.task)
        names = list(chosen)
        scores = torch.cat([act_f[n] / (act_r[n] + eps) for n in names])
        k = max(1, int(ratio * scores.numel()))
        top = torch.topk(scores, k).indices.cpu()
        offsets = torch.tensor([0] + [_input_width(chosen[n]) for n in names]).cumsum(0)
        pruned: dict[str, list[int]] = {}
        with torch.no_grad():
            for i, n in enumerate(names):
                local = top[(top >= offsets[i]) & (top < offsets[i + 1])] - offsets[i]
                if local.numel():
                    _zero_input_units(chosen[n], local)
                    pruned[n] = sorted(local.tolist())
        self.info_["pruned_units"] = pruned
        self.info_["num_units"] = int(scores.numel())
        return model

    @staticmethod
    def _choose(model: torch.nn.Module, layers: Sequence[str] | None) -> dict[str, torch.nn.Module]:
        modules = dict(model.named_modules())
        if layers is None:
            names = [n for n, m in modules.items() if _prunable(m)][1:]
            if not names:
                raise InvalidInputError("the model has fewer than two Linear/Conv layers; pass layers= explicitly")
        else:
            if isinstance(layers, str):
                raise InvalidInputError(f"layers must be a list of module names or patterns, got the string {layers!r}")
            names = []
            for entry in layers:
                hits = [n for n in modules if n and fnmatch.fnmatchcase(n, entry)] if any(c in entry for c in "*?[") else (
                    [entry] if entry in modules else [])
                if not hits:
                    raise InvalidInputError(f"layers entry {entry!r} names no module of the model")
                names += [n for n in hits if n not in names]
            bad = [n for n in names if not _prunable(modules[n])]
            if bad:
                raise InvalidInputError(f"layers {bad} are not Linear / Conv / transformers Conv1D layers")
        return {n: modules[n] for n in names}


@register_strategy("mask_based")
class MaskBased(NeuronPruning):
    """Mask-based unlearning with the selective-pruning mask (Pochinkov & Schoots 2024): the forget/retain
    post-activation ratio ``s_j = a_j(D_f) / (a_j(D_r) + eps)`` of ``neuron_pruning``, the top ``ratio`` of the
    units masked to zero by zeroing the weights that read them."""
