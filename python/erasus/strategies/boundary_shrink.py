"""Boundary Shrink: relabel forget samples with their nearest incorrect class found by FGSM."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from ..errors import ErasusTypeError, InvalidInputError
from ..registry import register_strategy
from .base import Run, UnlearningStrategy, weighted

__all__ = ["BoundaryShrink", "neighbour_labels"]


def neighbour_labels(model: torch.nn.Module, run: Run, *, epsilon: float) -> torch.Tensor:
    """Nearest-but-incorrect label of every forget sample: ``argmax_{c != y} f(x + eps * sign(grad_x CE(f(x), y)))``."""
    model.eval()
    labels = torch.empty(len(run.forget), dtype=torch.long)  # type: ignore[arg-type]
    start = 0
    for batch, _ in run.forget_epoch(shuffle=False):
        x = run.task.features_input(batch)
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise ErasusTypeError("boundary_shrink perturbs inputs with FGSM and needs floating-point model inputs")
        x_req = x.detach().clone().requires_grad_(True)
        adv_batch = run.task.with_inputs(batch, x_req)
        loss = run.task.per_sample_loss(model, adv_batch).sum()
        (grad,) = torch.autograd.grad(loss, x_req)
        x_adv = (x + epsilon * grad.sign()).detach()
        with torch.no_grad():
            logits = run.task.outputs(model, run.task.with_inputs(batch, x_adv)).clone()
        y = run.task.labels(batch).to(logits.device)
        logits[torch.arange(len(y), device=logits.device), y] = float("-inf")
        b = len(y)
        labels[start : start + b] = logits.argmax(1).cpu()
        start += b
    return labels


@register_strategy("boundary_shrink")
class BoundaryShrink(UnlearningStrategy):
    """Boundary Shrink (Chen et al., "Boundary Unlearning", CVPR 2023).

    For each forget sample the trained (frozen) model's FGSM neighbour ``x' = x + eps * sign(grad_x l(x, y))``
    gives the nearest-but-incorrect label ``y_nbi = argmax_{c != y} f(x')``; the model is then fine-tuned on
    ``min_theta sum_i w_i CE(f(x_i), y_nbi_i) / sum_i w_i``, shrinking the forgotten class's decision region
    into its neighbours. (The argmax skips ``y`` so a failed attack still yields an incorrect neighbour.)

    Defaults from the paper: ``epsilon = 0.1`` (attack bound), SGD lr 1e-5 momentum 0.9, 10 epochs; inputs
    must be floating-point tensors (images, features).
    """

    defaults = {"lr": 1e-5, "epsilon": 0.1, "default_epochs": 10}
    retain = "unused"

    def _unlearn(self, model: torch.nn.Module, run: Run, *, epsilon: float, default_epochs: float) -> torch.nn.Module:
        if epsilon <= 0:
            raise InvalidInputError(f"epsilon must be positive, got {epsilon}")
        attacker = copy.deepcopy(model)
        for p in attacker.parameters():
            p.requires_grad_(False)
        nbi = neighbour_labels(attacker, run, epsilon=epsilon)
        del attacker
        stream = run.forget_stream_indexed()

        def loss(_: int) -> torch.Tensor:
            batch, w, idx = next(stream)
            logits = run.task.outputs(model, batch)
            return weighted(F.cross_entropy(logits, nbi[idx].to(logits.device), reduction="none"), w)

        run.train(model, loss, num_steps=run.num_steps(default_epochs), desc="shrink to neighbour labels")
        self.info_["neighbour_labels"] = nbi
        return model
