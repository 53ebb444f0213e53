"""Differentially private fine-tuning on the retain set (DP-SGD through opacus)."""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch
from torch.utils.data import DataLoader

from ..data import collate_of
from ..errors import InvalidInputError, NonFiniteError, require
from ..registry import register_strategy
from .base import Run, UnlearningStrategy

__all__ = ["DPFinetune"]


@register_strategy("dp_finetune")
class DPFinetune(UnlearningStrategy):
    """DP fine-tuning on the retain set with DP-SGD (Abadi et al., CCS 2016; opacus, Yousefpour et al. 2021).

    Each step clips per-sample gradients to ``max_grad_norm`` ``C`` and adds ``N(0, sigma^2 C^2)`` noise,
    ``g = (1/B) (sum_i clip(g_i, C) + N(0, sigma^2 C^2 I))``, over Poisson-sampled retain batches; ``sigma`` is
    calibrated by opacus (``get_noise_multiplier``) so that exactly the requested number of steps — ``steps``,
    or ``epochs`` passes (default 3) — reaches the target ``(epsilon, delta)`` under ``accountant`` (``"rdp"``:
    Mironov 2017; ``"prv"``: Gopi et al. 2021). ``info_["epsilon_spent"]`` is the epsilon actually spent and
    ``certificate_`` an :class:`erasus.certification.Certificate` for it (group privacy for ``group_size``
    samples). Needs the ``dp`` extra (opacus).

    **What this does not do: forget.** The DP guarantee covers only these fine-tuning steps on the retain set.
    A model that already saw the forget set keeps whatever it memorised of it: DP fine-tuning on the retain
    set gives *no* forgetting guarantee for such a model (the forget set is not read; its ``weights`` are
    unused). It certifies removal only for a model whose whole training was DP-SGD
    (:func:`erasus.certification.dp_certificate`).

    The privacy noise comes from OS entropy unless ``unlearn(seed=...)`` is passed explicitly (a fixed default
    seed would make the noise public); batch sampling stays seeded. Every step's loss and the final weights
    are checked for NaN/inf (a diverging ``lr`` raises :class:`erasus.NonFiniteError`, the caller's model intact).
    Defaults: ``target_epsilon = 8``, ``target_delta = 1e-5``, ``max_grad_norm = 1``, SGD lr 0.05, 3 epochs.
    """

    data_parallel = False

    supports_until = False  # opacus' DP-SGD loop, and a budget fixed in advance by the privacy accounting
    defaults = {"lr": 0.05, "target_epsilon": 8.0, "target_delta": 1e-5, "max_grad_norm": 1.0, "default_epochs": 3,
                "accountant": "rdp", "group_size": 1}
    retain = "required"

    def unlearn(self, *, seed: int | None = None, **kw: Any) -> torch.nn.Module:  # type: ignore[override]
        """As :meth:`UnlearningStrategy.unlearn`; without ``seed`` the DP noise comes from OS entropy."""
        from ..certification.noise import privacy_generator

        self._noise_seed = seed
        privacy_generator(seed)  # validates seed before any work
        return super().unlearn(seed=0 if seed is None else seed, **kw)

    def _unlearn(
        self,
        model: torch.nn.Module,
        run: Run,
        *,
        target_epsilon: float,
        target_delta: float,
        max_grad_norm: float,
        default_epochs: float,
        accountant: str,
        group_size: int,
    ) -> torch.nn.Module:
        require("opacus", "dp", purpose="dp_finetune")
        from opacus import PrivacyEngine
        from opacus.validators import ModuleValidator

        from ..certification import ACCOUNTANTS, dp_certificate
        from ..certification.accounting import noise_multiplier_for
        from ..certification.noise import privacy_generator

        if target_epsilon <= 0 or not 0 < target_delta < 1 or max_grad_norm <= 0:
            raise InvalidInputError("need target_epsilon > 0, 0 < target_delta < 1 and max_grad_norm > 0")
        if accountant not in ACCOUNTANTS:
            raise InvalidInputError(f"accountant must be one of {ACCOUNTANTS}, got {accountant!r}")
        if not isinstance(group_size, int) or group_size < 1:
            raise InvalidInputError(f"group_size must be a positive int, got {group_size!r}")
        per_epoch = run.batches_per_epoch("retain")
        # exactly the requested number of steps: opacus' epochs would be rounded up to whole passes
        steps = run.num_steps(default_epochs, which="retain")
        model.train()
        problems = ModuleValidator.validate(model, strict=False)
        if problems:
            raise InvalidInputError(
                "dp_finetune cannot train this model with DP-SGD: "
                + "; ".join(str(p) for p in problems)[:500]
                + " (opacus.validators.ModuleValidator.fix(model) swaps BatchNorm for GroupNorm, then re-train)"
            )
        loader = DataLoader(run.retain, batch_size=run.batch_size, shuffle=True, collate_fn=collate_of(run.retain_raw),
                            generator=torch.Generator().manual_seed(run.seed))
        sample_rate = 1.0 / per_epoch  # what opacus' Poisson sampler uses for this loader
        noise_multiplier = noise_multiplier_for(target_epsilon=target_epsilon, target_delta=target_delta,
                                                sample_rate=sample_rate, steps=steps, accountant=accountant)
        optimizer = run.make_optimizer(run.trainable(model))
        with warnings.catch_warnings():
            # opacus warns that its secure RNG is off; the noise generator is seeded from OS entropy instead
            warnings.filterwarnings("ignore", message="Secure RNG turned off")
            engine = PrivacyEngine(accountant=accountant)
            dp_model, dp_opt, dp_loader = engine.make_private(
                module=model,
                optimizer=optimizer,
                data_loader=loader,
                noise_multiplier=noise_multiplier,
                max_grad_norm=max_grad_norm,
                noise_generator=privacy_generator(self._noise_seed, run.device),
            )
        from tqdm.auto import tqdm

        try:
            dp_model.train()
            bar = tqdm(total=steps, desc="dp_finetune: DP-SGD on retain", disable=not run.progress, leave=False)
            done = 0
            while done < steps:
                for batch in dp_loader:
                    if done == steps:
                        break
                    batch = run.prepare(batch)
                    dp_opt.zero_grad(set_to_none=True)
                    if run.task.batch_size(batch) == 0:
                        loss = sum(p.sum() * 0.0 for p in dp_model.parameters())
                    else:
                        loss = run.task.loss(dp_model, batch)
                    if not torch.isfinite(loss):
                        raise NonFiniteError(
                            f"dp_finetune: the DP-SGD loss became {loss.item()} at step {done}; lower lr (now {run.lr})"
                        )
                    with warnings.catch_warnings():
                        # opacus' hooks fire on module outputs when inputs need no grad; expected
                        warnings.filterwarnings("ignore", message="Full backward hook is firing")
                        loss.backward()
                    dp_opt.step()
                    run.history.append(float(loss.detach()))
                    done += 1
                    bar.update(1)
            bar.close()
        finally:
            dp_model._close()
        bad = [name for name, p in model.named_parameters() if not torch.isfinite(p).all()]
        if bad:
            raise NonFiniteError(f"dp_finetune: the last DP-SGD step made {bad[:3]} non-finite; lower lr (now {run.lr})")
        epsilon = float(engine.get_epsilon(target_delta))
        if not math.isfinite(epsilon):
            raise NonFiniteError(f"dp_finetune: the {accountant} accountant returned epsilon={epsilon}")
        self.certificate_ = dp_certificate(model, run.retain_raw, noise_multiplier=float(noise_multiplier),
                                           sample_rate=sample_rate, steps=steps, delta=target_delta,
                                           group_size=group_size, accountant=accountant, fine_tuned=True)
        self.info_.update(
            epsilon_spent=epsilon,
            target_epsilon=target_epsilon,
            target_delta=target_delta,
            noise_multiplier=float(noise_multiplier),
            sample_rate=sample_rate,
            steps=steps,
            epochs=steps / per_epoch,
            accountant=accountant,
            seeded_noise=self._noise_seed is not None,
        )
        return model
