"""Differentially private fine-tuning on the retain set (DP-SGD through opacus)."""

from __future__ import annotations

import warnings

import torch
from torch.utils.data import DataLoader

from ..data import collate_of
from ..errors import InvalidInputError, require
from ..registry import register_strategy
from .base import Run, UnlearningStrategy

__all__ = ["DPFinetune"]


@register_strategy("dp_finetune")
class DPFinetune(UnlearningStrategy):
    """DP fine-tuning on the retain set with DP-SGD (Abadi et al., CCS 2016; opacus, Yousefpour et al. 2021).

    Each step clips per-sample gradients to ``max_grad_norm`` ``C`` and adds ``N(0, sigma^2 C^2)`` noise,
    ``g = (1/B) (sum_i clip(g_i, C) + N(0, sigma^2 C^2 I))``, over Poisson-sampled retain batches; ``sigma`` is
    calibrated by opacus so that ``epochs`` passes reach the target ``(epsilon, delta)`` under the RDP
    accountant. ``info_["epsilon_spent"]`` reports the epsilon actually spent. Needs the ``dp`` extra (opacus).

    The guarantee covers the retain data used here; the forget set is not read (its ``weights`` are unused).
    Defaults: ``target_epsilon = 8``, ``target_delta = 1e-5``, ``max_grad_norm = 1``, SGD lr 0.05, 3 epochs.
    """

    defaults = {"lr": 0.05, "target_epsilon": 8.0, "target_delta": 1e-5, "max_grad_norm": 1.0, "default_epochs": 3}
    retain = "required"

    def _unlearn(
        self,
        model: torch.nn.Module,
        run: Run,
        *,
        target_epsilon: float,
        target_delta: float,
        max_grad_norm: float,
        default_epochs: float,
    ) -> torch.nn.Module:
        require("opacus", "dp", purpose="dp_finetune")
        from opacus import PrivacyEngine

        if target_epsilon <= 0 or not 0 < target_delta < 1 or max_grad_norm <= 0:
            raise InvalidInputError("need target_epsilon > 0, 0 < target_delta < 1 and max_grad_norm > 0")
        per_epoch = run.batches_per_epoch("retain")
        epochs = run.epochs if run.epochs is not None else default_epochs
        if run.steps is not None:
            epochs = run.steps / per_epoch
        epochs = max(1, int(round(epochs)))
        loader = DataLoader(run.retain, batch_size=run.batch_size, shuffle=True, collate_fn=collate_of(run.retain_raw),
                            generator=torch.Generator().manual_seed(run.seed))
        optimizer = run.make_optimizer(run.trainable(model))
        model.train()
        from opacus.validators import ModuleValidator

        problems = ModuleValidator.validate(model, strict=False)
        if problems:
            raise InvalidInputError(
                "dp_finetune cannot train this model with DP-SGD: "
                + "; ".join(str(p) for p in problems)[:500]
                + " (opacus.validators.ModuleValidator.fix(model) swaps BatchNorm for GroupNorm, then re-train)"
            )
        with warnings.catch_warnings():
            # opacus warns that its secure RNG is off: reproducible seeds are the point here
            warnings.filterwarnings("ignore", message="Secure RNG turned off")
            engine = PrivacyEngine(accountant="rdp")
            dp_model, dp_opt, dp_loader = engine.make_private_with_epsilon(
                module=model,
                optimizer=optimizer,
                data_loader=loader,
                target_epsilon=target_epsilon,
                target_delta=target_delta,
                epochs=epochs,
                max_grad_norm=max_grad_norm,
                noise_generator=torch.Generator(device=run.device).manual_seed(run.seed),
            )
        from tqdm.auto import tqdm

        try:
            dp_model.train()
            bar = tqdm(total=epochs * len(dp_loader), desc="dp_finetune: DP-SGD on retain", disable=not run.progress,
                       leave=False)
            for _ in range(epochs):
                for batch in dp_loader:
                    batch = run.prepare(batch)
                    dp_opt.zero_grad(set_to_none=True)
                    if run.task.batch_size(batch) == 0:
                        loss = sum(p.sum() * 0.0 for p in dp_model.parameters())
                    else:
                        loss = run.task.loss(dp_model, batch)
                    with warnings.catch_warnings():
                        # opacus' hooks fire on module outputs when inputs need no grad; expected
                        warnings.filterwarnings("ignore", message="Full backward hook is firing")
                        loss.backward()
                    dp_opt.step()
                    run.history.append(float(loss.detach()))
                    bar.update(1)
            bar.close()
        finally:
            dp_model._close()
        self.info_.update(
            epsilon_spent=float(engine.get_epsilon(target_delta)),
            target_epsilon=target_epsilon,
            target_delta=target_delta,
            noise_multiplier=float(dp_opt.noise_multiplier),
            epochs=epochs,
        )
        return model
