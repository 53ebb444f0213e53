"""UNSIR: learn error-maximising noise for the forget classes, impair with it, then repair."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F

from ..data import collate_of
from ..errors import ErasusTypeError, InvalidInputError
from ..registry import register_strategy
from .base import Run, UnlearningStrategy, check_finite_loss

__all__ = ["Unsir"]


@register_strategy("unsir")
class Unsir(UnlearningStrategy):
    """UNSIR (Tarun, Chundawat, Mandal & Kankanhalli, "Fast Yet Effective Machine Unlearning", IEEE TNNLS 2023),
    following the reference notebook (vikram2000b/Fast-Machine-Unlearning, ``Machine Unlearning.ipynb``):

    1. *Error-maximising noise*: for every class ``c`` of the forget set, ``noise_size`` noise inputs ``N_c``
       (``randn`` init) are learned on the frozen trained model (eval mode) with Adam (lr ``noise_lr`` = 0.1,
       ``noise_steps`` = 40, the notebook's 5 epochs x 8 steps):
       ``min_N  -CE(f(N_c), c) + noise_reg * mean_j ||N_cj||^2`` (``noise_reg`` = 0.1), each class on its own.
    2. *Impair*: ``noise_repeats`` (20) copies of every class's noise, labelled ``c``, shuffled into the retain
       set once per epoch; one pass (``impair_epochs``) with Adam lr ``lr`` = 0.02, plain CE per batch.
    3. *Repair*: one pass (``repair_epochs``) over the shuffled retain set with a fresh Adam, lr ``repair_lr`` = 0.01.

    The notebook uses ``noise_size`` = its batch size 256; here it defaults to ``batch_size``. Per-sample
    ``weights`` (rescaled to mean 1 over the forget samples with positive weight) weight each class's noise by
    its samples' mean weight; a class whose samples all have weight 0 gets no noise. ``steps`` caps each of the
    impair and repair phases. Deviations: the notebook labels every noise sample with class 0 (``class_num = 0``,
    right only when the forgotten class is 0); here noise for class ``c`` is labelled ``c``, as the paper says.
    The notebook's retain data is a subset of 1000 samples per class: pass such a subset to reproduce it.
    """

    defaults = {
        "lr": 0.02,
        "optimizer": "adam",
        "repair_lr": 0.01,
        "noise_size": None,
        "noise_repeats": 20,
        "noise_steps": 40,
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
        noise_size: int | None,
        noise_repeats: int,
        noise_steps: int,
        noise_lr: float,
        noise_reg: float,
        impair_epochs: float,
        repair_epochs: float,
    ) -> torch.nn.Module:
        noise_size = run.batch_size if noise_size is None else noise_size
        for key, value in (("noise_size", noise_size), ("noise_repeats", noise_repeats), ("noise_steps", noise_steps)):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise InvalidInputError(f"{key} must be a positive integer, got {value!r}")
        if not (impair_epochs > 0 and repair_epochs > 0):
            raise InvalidInputError(f"impair_epochs and repair_epochs must be positive, got {impair_epochs}, {repair_epochs}")
        if not (noise_lr > 0 and noise_reg >= 0 and repair_lr >= 0):
            raise InvalidInputError(
                f"noise_lr must be positive and noise_reg, repair_lr non-negative; got noise_lr={noise_lr}, "
                f"noise_reg={noise_reg}, repair_lr={repair_lr}"
            )
        # forget classes and the (rescaled) mean weight of their samples
        weight_sum: dict[int, float] = {}
        count: dict[int, int] = {}
        x_example, template = None, None
        for batch, w in run.forget_epoch(shuffle=False):
            if run.task.labels(batch).ndim != 1:
                raise InvalidInputError(
                    f"unsir learns one error-maximising noise per forget class and needs per-sample class labels; "
                    f"task {run.task.name!r} has token labels (a transcript is not a class)"
                )
            x = run.task.features_input(batch)
            if not isinstance(x, torch.Tensor) or not x.is_floating_point():
                raise ErasusTypeError("unsir learns input noise and needs floating-point model inputs")
            x_example, template = x, batch
            y = run.task.labels(batch).cpu()
            ws = torch.ones(len(y)) if w is None else w.cpu()
            for c, wi in zip(y.tolist(), ws.tolist()):
                weight_sum[c] = weight_sum.get(c, 0.0) + wi
                count[c] = count.get(c, 0) + 1
        if x_example is None or template is None:
            raise InvalidInputError("the forget set is empty")
        classes = sorted(c for c, v in weight_sum.items() if v > 0)
        scale = 1.0
        if run.weights is not None:
            scale = float((run.weights > 0).sum()) / float(run.weights.sum())
        class_w = {c: scale * weight_sum[c] / count[c] for c in classes}

        noise, noise_y = self._learn_noise(model, run, template, x_example, classes, noise_size=noise_size,
                                           noise_steps=noise_steps, noise_lr=noise_lr, noise_reg=noise_reg)
        noise_v = torch.tensor([class_w[c] for c in classes], device=run.device).repeat_interleave(noise_size)
        self.info_["noise_classes"] = classes

        n_noise = len(noise) * noise_repeats
        impair_batches, per_epoch = self._noisy_batches(run, template, noise, noise_y, noise_v, noise_repeats)
        self.info_["impair_samples_per_epoch"] = n_noise + len(run.retain)  # type: ignore[arg-type]

        def impair(_: int) -> torch.Tensor:
            batch, v = next(impair_batches)
            losses = run.task.per_sample_loss(model, batch)
            total = v.sum()
            return (v * losses).sum() / total if float(total) > 0 else (v * losses).sum()

        n_impair = run.steps or max(1, int(round(impair_epochs * per_epoch)))
        run.train(model, impair, num_steps=n_impair, desc="impair with noise")
        retain = run.retain_stream()
        n_repair = run.steps or max(1, int(round(repair_epochs * run.batches_per_epoch("retain"))))
        run.train(
            model,
            lambda _: run.task.loss(model, next(retain)),
            num_steps=n_repair,
            desc="repair on retain",
            optimizer=run.make_optimizer(run.trainable(model), lr=repair_lr),
            stoppable=False,
        )
        return model

    @staticmethod
    def _learn_noise(
        model: torch.nn.Module, run: Run, template: Any, x_example: torch.Tensor, classes: list[int], *,
        noise_size: int, noise_steps: int, noise_lr: float, noise_reg: float,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(len(classes) * noise_size, ...)`` noise and its labels; each class's block minimises its own
        objective (the classes share one Adam, which is per-element, so this equals one optimiser per class)."""
        frozen = copy.deepcopy(model).eval()
        for p in frozen.parameters():
            p.requires_grad_(False)
        k = len(classes)
        noise = torch.randn((k * noise_size, *x_example.shape[1:]), generator=run.generator)
        noise = noise.to(device=run.device, dtype=x_example.dtype).requires_grad_(True)
        noise_y = torch.tensor(classes, device=run.device).repeat_interleave(noise_size)
        opt = torch.optim.Adam([noise], lr=noise_lr)
        for step in range(noise_steps):
            opt.zero_grad(set_to_none=True)
            logits = run.task.outputs(frozen, run.task.with_labels(run.task.with_inputs(template, noise), noise_y))
            ce = F.cross_entropy(logits, noise_y, reduction="none").reshape(k, noise_size).mean(1)
            reg = noise.pow(2).reshape(k, noise_size, -1).sum(2).mean(1)
            objective = (-ce + noise_reg * reg).sum()
            check_finite_loss(objective, strategy="unsir", desc="noise", step=step, lr=noise_lr)
            objective.backward()
            opt.step()
        return noise.detach(), noise_y

    @staticmethod
    def _noisy_batches(
        run: Run, template: Any, noise: torch.Tensor, noise_y: torch.Tensor, noise_v: torch.Tensor, repeats: int,
    ) -> tuple[Iterator[tuple[Any, torch.Tensor]], int]:
        """Endless epochs over ``repeats`` copies of the noise shuffled with the retain set, reshuffled every
        epoch: ``(batch, per-sample loss weights)``, noise rows first within a batch."""
        n_copy = len(noise)
        n_noise = n_copy * repeats
        n_total = n_noise + len(run.retain)  # type: ignore[arg-type]
        collate = collate_of(run.retain_raw)
        gen = torch.Generator().manual_seed(run.seed * 100_003 + 29)
        per_epoch = -(-n_total // run.batch_size)

        def stream() -> Iterator[tuple[Any, torch.Tensor]]:
            while True:
                for ids in torch.randperm(n_total, generator=gen).split(run.batch_size):
                    nid = ids[ids < n_noise] % n_copy
                    rid = (ids[ids >= n_noise] - n_noise).tolist()
                    xs, ys = [noise[nid.to(noise.device)]], [noise_y[nid.to(noise_y.device)]]
                    base = template
                    if rid:
                        base = run.prepare(collate([run.retain[i] for i in rid]))  # type: ignore[index]
                        xs.append(run.task.features_input(base).to(noise.dtype))
                        ys.append(run.task.labels(base).to(noise_y.device))
                    batch = run.task.with_labels(run.task.with_inputs(base, torch.cat(xs)), torch.cat(ys))
                    v = torch.cat([noise_v[nid.to(noise_v.device)], torch.ones(len(rid), device=noise_v.device)])
                    yield batch, v

        return stream(), per_epoch
