"""Prune the units that the forget set activates far more than the retain set."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..errors import InvalidInputError
from ..registry import register_strategy
from .base import Run, UnlearningStrategy

__all__ = ["NeuronPruning", "MaskBased"]

_PRUNABLE = (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)


def _mean_activation(model: torch.nn.Module, layers: dict[str, torch.nn.Module], batches, task) -> dict[str, torch.Tensor]:
    """Per-unit (output feature / channel) mean ``|activation|``, weighted by the batch weights when given."""
    sums: dict[str, torch.Tensor] = {}
    total = [0.0]
    current_w: list[torch.Tensor | None] = [None]

    def hook(name: str):
        def fn(_m, _inp, out):
            a = out.detach().abs()
            per_sample = a.reshape(a.shape[0], a.shape[1], -1).mean(2) if a.ndim > 2 else a
            w = current_w[0]
            s = per_sample.sum(0) if w is None else (per_sample * w.to(a.dtype)[:, None]).sum(0)
            sums[name] = sums.get(name, 0) + s.double()

        return fn

    handles = [m.register_forward_hook(hook(n)) for n, m in layers.items()]
    try:
        model.eval()
        with torch.no_grad():
            for batch, w in batches:
                current_w[0] = w
                total[0] += float(w.sum()) if w is not None else task.batch_size(batch)
                task.outputs(model, batch)
    finally:
        for h in handles:
            h.remove()
    return {n: s / total[0] for n, s in sums.items()}


@register_strategy("neuron_pruning")
class NeuronPruning(UnlearningStrategy):
    """Forget-selective neuron pruning (in the line of Pochinkov & Schoots, "Dissecting Language Models: Machine
    Unlearning via Selective Pruning", 2024, and activation-based class unlearning).

    For each chosen layer ``l`` (default: every Linear/Conv layer but the output layer) and unit ``j``, with
    ``a_j(D) = E_D |h_j(x)|`` (forget mean weighted ``sum_i w_i |h_j(x_i)| / sum_i w_i``), the score is
    ``s_j = a_j(D_f) / (a_j(D_r) + eps)``; the ``ratio`` fraction of units with the highest score in each layer
    is pruned by zeroing their weight rows (output channels) and biases, so they output 0.

    Defaults: ``ratio = 0.05`` of the units per layer, ``eps = 1e-8``; ``layers`` takes module names.
    """

    defaults = {"ratio": 0.05, "layers": None, "eps": 1e-8}
    retain = "required"
    gradient_based = False

    def _unlearn(
        self, model: torch.nn.Module, run: Run, *, ratio: float, layers: Sequence[str] | None, eps: float
    ) -> torch.nn.Module:
        if not 0.0 < ratio < 1.0:
            raise InvalidInputError(f"ratio must be in (0, 1), got {ratio}")
        modules = dict(model.named_modules())
        if layers is None:
            names = [n for n, m in modules.items() if isinstance(m, _PRUNABLE)][:-1]
            if not names:
                raise InvalidInputError("the model has fewer than two Linear/Conv layers; pass layers= explicitly")
        else:
            missing = [n for n in layers if n not in modules]
            if missing:
                raise InvalidInputError(f"layers {missing} are not modules of the model")
            names = list(layers)
            bad = [n for n in names if not isinstance(modules[n], _PRUNABLE)]
            if bad:
                raise InvalidInputError(f"layers {bad} are not Linear/Conv layers")
        chosen = {n: modules[n] for n in names}
        act_f = _mean_activation(model, chosen, run.forget_epoch(shuffle=False), run.task)
        act_r = _mean_activation(model, chosen, ((b, None) for b in run.retain_epoch(shuffle=False)), run.task)
        pruned: dict[str, list[int]] = {}
        with torch.no_grad():
            for name, m in chosen.items():
                score = act_f[name] / (act_r[name] + eps)
                k = max(1, int(round(ratio * score.numel())))
                idx = torch.topk(score, k).indices
                m.weight[idx.to(m.weight.device)] = 0
                if m.bias is not None:
                    m.bias[idx.to(m.bias.device)] = 0
                pruned[name] = sorted(idx.tolist())
        self.info_["pruned_units"] = pruned
        return model


@register_strategy("mask_based")
class MaskBased(NeuronPruning):
    """Mask-based unlearning (Pochinkov & Schoots 2024): the forget/retain activation-ratio unit mask of
    ``neuron_pruning``, ``s_j = a_j(D_f) / (a_j(D_r) + eps)``, with the top-``ratio`` units masked to zero."""
