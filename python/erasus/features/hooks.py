"""Per-sample gradients of Linear / Conv2d / Embedding (and HF Conv1D) layers from one backward pass.

Opacus-style: a forward hook keeps each supported layer's input and output; ``autograd.grad`` of the summed
per-sample losses w.r.t. the outputs gives every sample's output gradient at once. A layer's per-sample
weight gradient is then ``G_b = sum_t u_bt v_bt^T`` in the weight's own (rows, cols) layout, which this
module keeps in that factored form (:class:`Factors`) so callers can materialize it, project it with LoGra,
or take its norm with the ghost identity.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Factors", "LayerCapture", "supported"]


@dataclasses.dataclass
class Factors:
    """``G_b = sum_t u_bt v_bt^T`` for one use of a layer.

    ``u`` is (B, T, rows) or, for embeddings, ``ids`` (B, T) standing for one-hot rows (``rows`` wide);
    ``v`` is (B, T, cols). ``bias`` is the per-sample bias gradient ``sum_t g_bt`` (B, out) when the layer has one.
    """

    weight: torch.Tensor
    v: torch.Tensor
    u: torch.Tensor | None = None
    ids: torch.Tensor | None = None
    bias_param: torch.Tensor | None = None
    bias: torch.Tensor | None = None

    def samples(self, start: int, stop: int) -> "Factors":
        """The same factors for samples ``start:stop`` (bias gradient dropped)."""
        return Factors(weight=self.weight, v=self.v[start:stop], u=None if self.u is None else self.u[start:stop],
                       ids=None if self.ids is None else self.ids[start:stop])

    def dense(self) -> torch.Tensor:
        """The per-sample weight gradients (B, *weight.shape), float32."""
        b = self.v.shape[0]
        rows, cols = self.weight.shape[0], self.v.shape[-1]
        if self.ids is None:
            assert self.u is not None
            grad = torch.bmm(self.u.transpose(1, 2).float(), self.v.float())
        else:
            grad = torch.zeros(b, rows, cols, dtype=torch.float32, device=self.v.device)
            grad.scatter_add_(1, self.ids[:, :, None].expand(-1, -1, cols), self.v.float())
        return grad.reshape(b, *self.weight.shape)


def _is_hf_conv1d(module: nn.Module) -> bool:
    # transformers' Conv1D (GPT-2): y = x @ W + b with W stored (in, out)
    return type(module).__name__ == "Conv1D" and hasattr(module, "nf") and getattr(module, "weight", None) is not None


def supported(module: nn.Module) -> bool:
    """Whether the hook rules below give this module's exact per-sample gradients."""
    if isinstance(module, nn.Linear) or _is_hf_conv1d(module):
        return True
    if isinstance(module, nn.Conv2d):
        return module.groups == 1 and module.padding_mode == "zeros" and not isinstance(module.padding, str)
    if isinstance(module, nn.Embedding):
        return module.max_norm is None and not module.scale_grad_by_freq and not module.sparse
    return False


def _factors(module: Any, inp: torch.Tensor, grad_out: torch.Tensor) -> Factors:
    b = grad_out.shape[0]
    if isinstance(module, nn.Embedding):
        ids = inp.reshape(b, -1)
        g = grad_out.reshape(b, ids.shape[1], -1)
        if module.padding_idx is not None:
            # torch never updates the padding row
            g = g.masked_fill((ids == module.padding_idx)[..., None], 0.0)
        return Factors(weight=module.weight, v=g, ids=ids)
    if isinstance(module, nn.Conv2d):
        padding: Any = module.padding  # supported() ruled out string paddings ("same"/"valid")
        a = F.unfold(inp, module.kernel_size, dilation=module.dilation, padding=padding,
                     stride=module.stride).transpose(1, 2)
        g = grad_out.reshape(b, grad_out.shape[1], -1).transpose(1, 2)
        bias = g.sum(1) if module.bias is not None else None
        return Factors(weight=module.weight, u=g, v=a, bias_param=module.bias, bias=bias)
    a = inp.reshape(b, -1, inp.shape[-1])
    g = grad_out.reshape(b, -1, grad_out.shape[-1])
    bias = g.sum(1) if module.bias is not None else None
    if _is_hf_conv1d(module):
        return Factors(weight=module.weight, u=a, v=g, bias_param=module.bias, bias=bias)
    return Factors(weight=module.weight, u=g, v=a, bias_param=module.bias, bias=bias)


class LayerCapture:
    """Context manager recording inputs/outputs of ``modules`` during one forward pass."""

    def __init__(self, modules: list[nn.Module]) -> None:
        self.modules = modules
        self._records: list[tuple[nn.Module, torch.Tensor, torch.Tensor]] = []
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def _hook(self, module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        if isinstance(output, torch.Tensor) and output.requires_grad:
            self._records.append((module, args[0].detach(), output))

    def __enter__(self) -> "LayerCapture":
        self._records.clear()
        self._handles = [m.register_forward_hook(self._hook) for m in self.modules]
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def factors(self, loss: torch.Tensor) -> list[Factors]:
        """Per-sample factors of every recorded layer use, from the gradient of ``loss`` (sum of per-sample
        losses) w.r.t. the recorded outputs."""
        records, self._records = self._records, []
        if not records:
            return []
        grads = torch.autograd.grad(loss, [out for _, _, out in records], allow_unused=True)
        out = []
        for (module, inp, output), g in zip(records, grads):
            if g is None:
                g = torch.zeros_like(output)
            out.append(_factors(module, inp, g.detach()))
        return out


def run_with_capture(modules: list[nn.Module], loss_fn: Callable[[], torch.Tensor]) -> tuple[torch.Tensor, list[Factors]]:
    """Run ``loss_fn`` (per-sample losses, (B,)) under a capture; returns the losses and the factors."""
    with LayerCapture(modules) as cap:
        losses = loss_fn()
    return losses.detach(), cap.factors(losses.sum())
