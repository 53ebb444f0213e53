"""SalUn: weight-saliency-masked random-label unlearning."""

from __future__ import annotations

import torch

from ..distributed.data_parallel import all_reduce_sum_
from ..errors import InvalidInputError
from ..registry import register_strategy
from .base import Run, UnlearningStrategy
from .random_label import forget_then_retain, random_label_loss

__all__ = ["SalUn", "saliency_mask"]


def saliency_mask(model: torch.nn.Module, run: Run, *, ratio: float) -> list[torch.Tensor]:
    """``m = 1[|grad_theta L_f(theta)| >= gamma]`` with ``gamma`` the global top-``ratio`` quantile of ``|g|``; under a
    multi-process group ``L_f`` is the mean over all ranks' forget shards, so every rank gets the same mask."""
    params = run.trainable(model)
    grads = [torch.zeros_like(p) for p in params]
    total = run.weights.sum() if run.weights is not None else None
    n = len(run.forget)  # type: ignore[arg-type]
    model.eval()
    for batch, w in run.forget_epoch(shuffle=False):
        model.zero_grad(set_to_none=True)
        losses = run.task.per_sample_loss(model, batch)
        # gradient of the full-forget-set (weighted) mean loss, accumulated batch by batch
        loss = (losses * w).sum() / total.to(w.device) if w is not None and total is not None else losses.sum() / n
        loss.backward()
        for g, p in zip(grads, params):
            if p.grad is not None:
                g.add_(p.grad)
    model.zero_grad(set_to_none=True)
    if run.replicas is not None:
        # the gradient of the mean over every rank's shard: sum_r (local mean * local size) / global size
        local = float(total) if total is not None else float(n)
        size = torch.tensor([local], dtype=torch.float64)
        all_reduce_sum_([size])
        for g in grads:
            g.mul_(local / float(size))
        all_reduce_sum_(grads)
    flat = torch.cat([g.abs().reshape(-1) for g in grads])
    k = max(1, int(round(ratio * flat.numel())))
    threshold = torch.topk(flat, k, sorted=True).values[-1]
    return [(g.abs() >= threshold).to(g.dtype) for g in grads]


@register_strategy("salun")
class SalUn(UnlearningStrategy):
    """SalUn (Fan et al., "SalUn: Empowering Machine Unlearning via Gradient-based Weight Saliency", ICLR 2024).

    Saliency mask ``m_S = 1[|grad_theta L_f(theta_o)| >= gamma]`` (``gamma`` keeps the top ``ratio`` of all
    weights by gradient magnitude, default 50%), then random-label unlearning restricted to salient weights,
    ``theta = m_S * (theta_o + Delta) + (1 - m_S) * theta_o``, on the schedule of the official code
    (OPTML-Group/Unlearn-Saliency, ``Classification/unlearn/RL.py`` with the ``generate_mask.py`` mask): each
    epoch a full forget pass with random labels ``y'`` (``sum_i w_i CE(f(x_i), y'_i) / sum_i w_i``), then a full
    retain pass with the true labels (``alpha * CE``, ``alpha = 1`` in the code), one masked step per batch.

    Defaults: ``ratio = 0.5``, ``alpha = 1``, lr 0.01 (searched in [1e-3, 1e-1] in the paper), 10 epochs, SGD
    momentum 0.9 without weight decay (so non-salient weights stay exactly unchanged).
    """

    defaults = {"lr": 0.01, "ratio": 0.5, "alpha": 1.0, "default_epochs": 10}
    retain = "optional"

    def _unlearn(
        self, model: torch.nn.Module, run: Run, *, ratio: float, alpha: float, default_epochs: float
    ) -> torch.nn.Module:
        if not 0.0 < ratio <= 1.0:
            raise InvalidInputError(f"ratio must be in (0, 1], got {ratio}")
        if run.task.name == "diffusion":
            raise InvalidInputError("random labels have no meaning for a diffusion model; use 'salun_diffusion' (SalUn's "
                                    "Stable Diffusion recipe: forget prompts remapped to another concept)")
        if run.weight_decay != 0.0:
            raise InvalidInputError("SalUn masks gradients; weight_decay would still move non-salient weights, use 0")
        num_classes = run.num_classes(model)
        masks = saliency_mask(model, run, ratio=ratio)
        params = run.trainable(model)
        self.info_["salient_fraction"] = float(sum(m.sum() for m in masks) / sum(m.numel() for m in masks))

        def apply_mask() -> None:
            for p, m in zip(params, masks):
                if p.grad is not None:
                    p.grad.mul_(m)

        schedule, num_steps = forget_then_retain(run, default_epochs=default_epochs, alpha=alpha)
        run.train(
            model,
            random_label_loss(model, run, schedule, num_classes=num_classes, exclude_true=False, alpha=alpha),
            num_steps=num_steps,
            desc="masked random labels, then retain",
            before_step=apply_mask,
        )
        return model
