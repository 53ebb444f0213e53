"""UNSIR: learn error-maximising noise for the forget classes, impair with it, then repair."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from ..errors import ErasusTypeError, InvalidInputError
from ..registry import register_strategy
from .base import Run, UnlearningStrategy

__all__ = ["Unsir"]


@register_strategy("unsir")
class Unsir(UnlearningStrategy):
    """UNSIR (Tarun, Chundawat, Mandal & Kankanhalli, "Fast Yet Effective Machine Unlearning", IEEE TNNLS 2023).

    1. *Error-maximising noise*: for every class ``c`` of the forget set, noise ``N_c`` (``noise_size`` inputs)
       is learned on the frozen trained model: ``min_N  -CE(f(N), c) + lambda * mean_j ||N_j||^2``.
    2. *Impair*: train on ``N_c`` labelled ``c`` together with retain batches (lr ``lr``, ``impair_epochs``),
       which destroys the forget classes' decision regions.
    3. *Repair*: train on the retain set alone (lr ``repair_lr``, ``repair_epochs``).

    Per-sample ``weights`` weight each class's noise by the total weight of its forget samples (a class whose
    samples all have weight 0 gets no noise). ``steps`` caps each of the impair and repair phases.
    Defaults from the paper: ``lambda = 0.1``, noise learned with Adam lr 0.1, impair lr 0.02 and repair lr
    0.01 with SGD, one epoch each.
    """

    defaults = {
        "lr": 0.02,
        "repair_lr": 0.01,
        "noise_size": 32,
        "noise_steps": 50,
        "noise_lr": 0.1,
        "noise_reg": 0.1,
        "impair_epochs": 1.0,
        "repair_epochs": 1.0,
    }
    retain = "required"

    def _unlearn(
        self,
        model: torch.nn.Module,
        run: Run,
        *,
        repair_lr: float,
        noise_size: int,
        noise_steps: int,
        noise_lr: float,
        noise_reg: float,
        impair_epochs: float,
        repair_epochs: float,
    ) -> torch.nn.Module:
        if noise_size <= 0 or noise_steps <= 0:
            raise InvalidInputError("noise_size and noise_steps must be positive")
        # forget classes and the total weight of their samples
        class_weight: dict[int, float] = {}
        x_example, template = None, None
        for batch, w in run.forget_epoch(shuffle=False):
            x = run.task.features_input(batch)
            if not isinstance(x, torch.Tensor) or not x.is_floating_point():
                raise ErasusTypeError("unsir learns input noise and needs floating-point model inputs")
            x_example, template = x, batch
            y = run.task.labels(batch).cpu()
            ws = torch.ones(len(y)) if w is None else w.cpu()
            for c, wi in zip(y.tolist(), ws.tolist()):
                class_weight[c] = class_weight.get(c, 0.0) + wi
        classes = sorted(c for c, v in class_weight.items() if v > 0)
        if x_example is None or template is None:
            raise InvalidInputError("the forget set is empty")
        frozen = copy.deepcopy(model).eval()
        for p in frozen.parameters():
            p.requires_grad_(False)

        noise = torch.randn((len(classes) * noise_size, *x_example.shape[1:]), generator=run.generator)
        noise = noise.to(device=run.device, dtype=x_example.dtype).requires_grad_(True)
        noise_y = torch.tensor(classes, device=run.device).repeat_interleave(noise_size)
        total = sum(class_weight[c] for c in classes)
        noise_w = torch.tensor([class_weight[c] / total for c in classes], device=run.device).repeat_interleave(noise_size)
        opt = torch.optim.Adam([noise], lr=noise_lr)
        for _ in range(noise_steps):
            opt.zero_grad(set_to_none=True)
            logits = run.task.outputs(frozen, run.task.with_inputs(template, noise))
            obj = -F.cross_entropy(logits, noise_y) + noise_reg * noise.pow(2).reshape(len(noise), -1).sum(1).mean()
            obj.backward()
            opt.step()
        noise = noise.detach()
        self.info_["noise_classes"] = classes
        del frozen

        retain = run.retain_stream()

        def impair(_: int) -> torch.Tensor:
            rb = next(retain)
            logits = run.task.outputs(model, run.task.with_inputs(template, noise))
            noise_loss = (F.cross_entropy(logits, noise_y, reduction="none") * noise_w).sum() / noise_w.sum()
            nn_, nr = len(noise), run.task.batch_size(rb)
            return (nn_ * noise_loss + nr * run.task.loss(model, rb)) / (nn_ + nr)

        per_epoch = run.batches_per_epoch("retain")
        n_impair = run.steps or max(1, int(round(impair_epochs * per_epoch)))
        n_repair = run.steps or max(1, int(round(repair_epochs * per_epoch)))
        run.train(model, impair, num_steps=n_impair, desc="impair with noise")
        run.train(
            model,
            lambda _: run.task.loss(model, next(retain)),
            num_steps=n_repair,
            desc="repair on retain",
            optimizer=run.make_optimizer(run.trainable(model), lr=repair_lr),
        )
        return model
