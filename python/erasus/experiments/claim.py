"""Does a coreset unlearn like the whole forget set? Measured against a retrained model.

For each seed: train a model on the training set, retrain an oracle from scratch without the forget set,
then for each strategy unlearn (a) the whole forget set and (b) coresets of ``fractions`` of it picked by
each selector, and score every result by SalUn's Avg. Gap to the oracle (mean absolute difference of
forget / retain / test accuracy and MIA-Efficacy). Coreset runs are charged for computing selection
features and for selection, as a user would pay them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
import warnings
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable, ClassVar, Literal, Mapping

import numpy as np
import torch
from torch.utils.data import TensorDataset

from ..config import Config
from ..errors import ConfigError, NonFiniteError, TargetNotReachedWarning
from ..metrics import MetricSuite, train_classifier
from ..metrics.gap import avg_gap
from ..registry import SELECTORS, STRATEGIES, get_selector
from ..selectors._common import ContextSelector
from ..selectors.base import features_from_model
from ..unlearner import ErasusUnlearner
from .datasets import load_dataset
from .entry_points import BUILTIN_DATASETS, build_model_from, check_dataset_spec, check_model_spec, load_split
from .models import SmallCNN

__all__ = ["ClaimConfig", "run_claim", "summarize", "DEFAULT_STRATEGY_OPTIONS"]

#: hyperparameters for the small CNN (Adam-trained, digits / Fashion-MNIST), shared by the full-set and the
#: coreset runs. The papers' defaults (e.g. gradient ascent lr 1e-4 with SGD) were set for ResNets; these larger
#: steps were picked so each method visibly changes the model within a few epochs, and were not tuned further.
DEFAULT_STRATEGY_OPTIONS: dict[str, dict[str, Any]] = {
    "gradient_ascent": {"lr": 2e-3, "default_epochs": 3},
    "grad_diff": {"lr": 5e-3, "default_epochs": 3},
    "scrub": {"lr": 5e-3, "default_epochs": 3},
    "neg_grad_plus": {"lr": 5e-3, "default_epochs": 3},
    "finetune": {"lr": 2e-2, "default_epochs": 3},
    "salun": {"lr": 1e-2, "default_epochs": 3},
    "random_label": {"lr": 1e-2, "default_epochs": 3},
    "ssd": {},
}

GAP_KEYS = ("forget_accuracy", "retain_accuracy", "test_accuracy", "mia_efficacy")


@dataclasses.dataclass(frozen=True, kw_only=True)
class ClaimConfig(Config):
    """One coreset-versus-full experiment (the main job and ``benches/unlearning``)."""

    kind: ClassVar[str] = "claim"
    #: ``digits`` / ``fashion_mnist``, an entry point (``"pkg.module:load_split"``, ``"file.py:load_split"``) or a
    #: ``.npz`` file: see :mod:`erasus.experiments.entry_points`
    dataset: str = "digits"
    #: ``small_cnn`` or an entry point returning an untrained ``nn.Module`` (``"pkg.module:make_model"``)
    model: str = "small_cnn"
    model_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    scenario: Literal["random", "class"] = "random"
    forget_fraction: float = 0.1
    forget_class: int = 0
    strategies: tuple[str, ...] = ("gradient_ascent", "grad_diff", "scrub")
    selectors: tuple[str, ...] = ("random", "kcenter", "herding", "craig", "facility_location", "el2n")
    fractions: tuple[float, ...] = (0.1,)
    seeds: tuple[int, ...] = (0,)
    train_epochs: int = 20
    limit_train: int | None = None
    limit_test: int | None = None
    proj_dim: int = 256
    strategy_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: the recipe (Adam) that trains the original model and the retrained oracle
    train_lr: float = 3e-3
    train_batch_size: int = 64
    #: "unlearn until" (issue 19): a stopping rule of :mod:`erasus.strategies.until` applied to every run, full set
    #: and coresets alike, e.g. ``{"metric": "forget_accuracy", "below": 0.05}`` or ``{"avg_gap_to": "retrained",
    #: "below": 2.0}`` (``"retrained"`` names the oracle this experiment retrains). The probe is the whole forget
    #: set, the retain set and (for Avg. Gap) the test set, each cut to ``until_probe`` samples when set; the
    #: splits are the experiment's, so a rule may not name ``data`` / ``retain`` / ``test`` / ``reference_model``.
    until: dict[str, Any] | None = None
    #: the step cap of an ``until`` run (``None``: the strategy's own budget, e.g. ``default_epochs``)
    until_steps: int | None = None
    #: samples per split in the ``until`` probe, drawn with the seed (``None``: the whole splits)
    until_probe: int | None = None

    def __post_init__(self) -> None:
        check_dataset_spec(self.dataset)
        check_model_spec(self.model)
        if not isinstance(self.model_options, dict):
            raise ConfigError(f"ClaimConfig.model_options must be a mapping, got {type(self.model_options).__name__}")
        if not (isinstance(self.train_lr, (int, float)) and self.train_lr > 0):
            raise ConfigError(f"ClaimConfig.train_lr must be a positive number, got {self.train_lr!r}")
        if not (isinstance(self.train_batch_size, int) and self.train_batch_size > 0):
            raise ConfigError(f"ClaimConfig.train_batch_size must be a positive integer, got {self.train_batch_size!r}")
        if not 0 < self.forget_fraction < 1:
            raise ConfigError(f"ClaimConfig.forget_fraction must be in (0, 1), got {self.forget_fraction}")
        for f in self.fractions:
            if not 0 < f <= 1:
                raise ConfigError(f"ClaimConfig.fractions must lie in (0, 1], got {f}")
        if self.until is not None:
            if not isinstance(self.until, dict):
                raise ConfigError(f"ClaimConfig.until must be a mapping such as {{'metric': 'forget_accuracy', "
                                  f"'below': 0.05}}, got {type(self.until).__name__}")
            given = sorted(set(self.until) & {"data", "retain", "test", "reference_model"})
            if given:
                raise ConfigError(f"ClaimConfig.until may not name {given}: the experiment probes its own forget, "
                                  "retain and test splits and its retrained oracle")
            if "avg_gap_to" in self.until and self.until["avg_gap_to"] != "retrained":
                raise ConfigError("ClaimConfig.until['avg_gap_to'] must be 'retrained' (the oracle this experiment "
                                  f"retrains), got {self.until['avg_gap_to']!r}")
        for name in ("until_steps", "until_probe"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
                raise ConfigError(f"ClaimConfig.{name} must be a positive integer or null, got {value!r}")
        if self.until is None and (self.until_steps is not None or self.until_probe is not None):
            raise ConfigError("ClaimConfig.until_steps / until_probe only apply with ClaimConfig.until")
        known_strategies, known_selectors = STRATEGIES.names(), SELECTORS.names()
        for s in self.strategies:
            if s not in known_strategies:
                raise ConfigError(f"ClaimConfig.strategies: unknown strategy {s!r}; expected one of {known_strategies}")
        for s in self.selectors:
            if s not in known_selectors:
                raise ConfigError(f"ClaimConfig.selectors: unknown selector {s!r}; expected one of {known_selectors}")


def _load(cfg: ClaimConfig, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    if cfg.dataset in BUILTIN_DATASETS:
        return load_dataset(cfg.dataset, seed=seed, limit_train=cfg.limit_train, limit_test=cfg.limit_test)
    xtr, ytr, xte, yte = load_split(cfg.dataset, seed=seed)
    rng = np.random.default_rng(seed)
    if cfg.limit_train is not None and cfg.limit_train < len(ytr):
        keep = np.sort(rng.choice(len(ytr), size=cfg.limit_train, replace=False))
        xtr, ytr = xtr[keep], ytr[keep]
    if cfg.limit_test is not None and cfg.limit_test < len(yte):
        keep = np.sort(rng.choice(len(yte), size=cfg.limit_test, replace=False))
        xte, yte = xte[keep], yte[keep]
    return xtr, ytr, xte, yte


def _fresh_model(cfg: ClaimConfig, *, seed: int, classes: int, x: torch.Tensor) -> torch.nn.Module:
    """An untrained model for the config's data, checked to map a batch of inputs to ``(batch, classes)`` logits."""
    torch.manual_seed(seed)
    if cfg.model == "small_cnn":
        if x.ndim != 4:
            raise ConfigError(f"model 'small_cnn' needs images (N, C, H, W); dataset {cfg.dataset!r} has inputs of "
                              f"shape {tuple(x.shape)}. Name your own model: model: 'package.module:make_model'")
        model: torch.nn.Module = SmallCNN(in_channels=x.shape[1], num_classes=classes, **cfg.model_options)
    else:
        model = build_model_from(cfg.model, num_classes=classes, input_shape=tuple(x.shape[1:]),
                                 options=cfg.model_options)
    try:
        with torch.no_grad():
            out = model.eval()(x[:2])
    except Exception as exc:
        raise ConfigError(f"model {cfg.model!r} cannot take the inputs of dataset {cfg.dataset!r} (shape "
                          f"{tuple(x.shape[1:])} per sample): {type(exc).__name__}: {exc}") from exc
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != min(2, len(x)) or out.shape[1] < classes:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ConfigError(f"model {cfg.model!r} returned {shape} for a batch of {min(2, len(x))}; expected logits of "
                          f"shape (batch, {classes}) for the {classes} classes of dataset {cfg.dataset!r}")
    return model.train()


def _split_forget(cfg: ClaimConfig, y: torch.Tensor, seed: int) -> np.ndarray:
    n = len(y)
    if cfg.scenario == "class":
        idx = np.flatnonzero(y.numpy() == cfg.forget_class)
        if idx.size == 0:
            raise ConfigError(f"class {cfg.forget_class} has no training samples")
        return idx
    rng = np.random.default_rng(10_000 + seed)
    return np.sort(rng.choice(n, size=max(1, int(round(cfg.forget_fraction * n))), replace=False))


def _until_rule(cfg: ClaimConfig, data: Mapping[str, Any], oracle: torch.nn.Module,
                seed: int) -> dict[str, Any] | None:
    """The config's ``until`` with the experiment's probe splits and (for ``avg_gap_to``) its oracle filled in."""
    if cfg.until is None:
        return None
    rng = np.random.default_rng(20_000 + seed)

    def probe(ds: TensorDataset) -> TensorDataset:
        if cfg.until_probe is None or cfg.until_probe >= len(ds):
            return ds
        idx = np.sort(rng.choice(len(ds), size=cfg.until_probe, replace=False))
        return TensorDataset(*(t[idx] for t in ds.tensors))

    rule: dict[str, Any] = {**cfg.until, "data": probe(data["forget"]), "retain": probe(data["retain"])}
    if "avg_gap_to" in rule:
        rule["avg_gap_to"] = oracle
    if "avg_gap_to" in rule or "test" in str(rule.get("metric", "")):
        rule["test"] = probe(data["test"])
    return rule


def _check_until(cfg: ClaimConfig, model: torch.nn.Module, data: Mapping[str, Any], seed: int) -> None:
    """Parse the ``until`` rule against the real splits before any training, so a bad rule costs nothing."""
    from ..strategies.until import StoppingRule
    from ..metrics.outputs import resolve_task

    rule = _until_rule(cfg, data, model, seed)
    if rule is not None:
        StoppingRule(rule, task=resolve_task(model, data["forget"], None), forget=data["forget"], retain=data["retain"])


def _until_fields(un: ErasusUnlearner) -> dict[str, Any]:
    """What an ``until`` run adds to its row: whether the target was met, at which step, and the probe's value."""
    outcome = un.history_.until
    if outcome is None:
        return {}
    return {"until_reached": bool(outcome["reached"]), "until_step": int(outcome["step"]),
            "until_value": float(outcome["value"])}


def _scores(suite: MetricSuite, model: torch.nn.Module, data: Mapping[str, Any]) -> dict[str, float]:
    out = suite.run(model, forget=data["forget"], retain=data["retain"], test=data["test"])
    return {k: float(out[k]) for k in GAP_KEYS}


def _row(base: dict[str, Any], scores: Mapping[str, float], ref: Mapping[str, float]) -> dict[str, Any]:
    row = dict(base)
    row.update(forget_acc=scores["forget_accuracy"], retain_acc=scores["retain_accuracy"],
               test_acc=scores["test_accuracy"], mia=scores["mia_efficacy"], avg_gap=avg_gap(scores, ref, keys=GAP_KEYS))
    return row


@contextlib.contextmanager
def _quiet_cap() -> Iterator[None]:
    """A run that hits its cap is a result (``until_reached`` False in its row), not a warning per run."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TargetNotReachedWarning)
        yield


def _diverged(base: dict[str, Any], exc: Exception) -> dict[str, Any]:
    """A run whose loss became NaN/inf: kept in the results (a finding, not a crash of the benchmark)."""
    return {**base, "diverged": str(exc), "forget_acc": None, "retain_acc": None, "test_acc": None, "mia": None,
            "avg_gap": None, "time_s": None, "speedup": None}


def _export(folder: Path, original: torch.nn.Module, oracle: torch.nn.Module, data: Mapping[str, Any]) -> None:
    """Weights (safetensors) and splits (npz) of the first seed, for ``erasus unlearn/evaluate`` configs."""
    from safetensors.torch import save_file

    from ..io import write_run_folder

    def weights(model: torch.nn.Module) -> Callable[[Path], None]:
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        return lambda path: save_file(state, str(path))

    def arrays(ds: Any) -> Callable[[Path], None]:
        x, y = ds.tensors

        def write(path: Path) -> None:
            with open(path, "wb") as fh:  # a file object: np.savez would append ".npz" to a temporary's name
                np.savez(fh, x=x.numpy(), y=y.numpy())

        return write

    writers = {"original.safetensors": weights(original), "retrained.safetensors": weights(oracle)}
    writers.update({f"{split}.npz": arrays(ds) for split, ds in data.items()})
    write_run_folder(folder, writers)


def run_claim(cfg: ClaimConfig, *, log: Callable[[str], None] = lambda s: None,
              export_dir: str | os.PathLike[str] | None = None, threads: int | None = 1) -> dict[str, Any]:
    """Run the experiment; returns ``{"rows", "reference", "selections", "features", "labels", "config"}``.

    ``export_dir``: also write the first seed's original and retrained weights and its data splits there.
    ``threads``: torch intra-op threads while it runs (restored afterwards). One by default: on these
    small models a second thread costs more in synchronisation than it computes (20 s instead of 3 s to
    train the digits CNN on a busy 2-core machine), and it makes the wall times comparable.
    """
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _run_claim(cfg, log=log, export_dir=export_dir)
    finally:
        torch.set_num_threads(previous)


def _run_claim(cfg: ClaimConfig, *, log: Callable[[str], None],
               export_dir: str | os.PathLike[str] | None) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    reference: list[dict[str, Any]] = []
    selections: dict[str, np.ndarray] = {}
    shown_features = shown_labels = None
    for seed in cfg.seeds:
        xtr, ytr, xte, yte = _load(cfg, seed)
        forget_idx = _split_forget(cfg, ytr, seed)
        keep = np.setdiff1d(np.arange(len(ytr)), forget_idx)
        data = {
            "forget": TensorDataset(xtr[forget_idx], ytr[forget_idx]),
            "retain": TensorDataset(xtr[keep], ytr[keep]),
            "test": TensorDataset(xte, yte),
        }
        classes = int(max(int(ytr.max()), int(yte.max()))) + 1
        recipe = {"epochs": cfg.train_epochs, "lr": cfg.train_lr, "weight_decay": 5e-4,
                  "batch_size": cfg.train_batch_size, "seed": seed}

        def fresh() -> torch.nn.Module:
            return _fresh_model(cfg, seed=seed, classes=classes, x=xtr)

        _check_until(cfg, fresh(), data, seed)  # a model or rule that does not fit the data fails before training

        t0 = time.perf_counter()
        original = train_classifier(fresh(), TensorDataset(xtr, ytr), **recipe)
        train_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        oracle = train_classifier(fresh(), data["retain"], **recipe)
        retrain_s = time.perf_counter() - t0
        log(f"seed {seed}: trained in {train_s:.1f}s, retrained oracle in {retrain_s:.1f}s "
            f"(forget {len(forget_idx)}, retain {len(keep)}, test {len(yte)})")
        if export_dir is not None and seed == cfg.seeds[0]:
            _export(Path(export_dir), original, oracle, data)
        until = _until_rule(cfg, data, oracle, seed)
        budget = {} if until is None else {"until": until, "steps": cfg.until_steps}
        suite = MetricSuite(["accuracy", "mia_efficacy"])
        ref = _scores(suite, oracle, data)
        base = {"scenario": cfg.scenario, "dataset": cfg.dataset, "seed": seed}
        reference.append(_row({**base, "strategy": "retrain", "selector": "-", "fraction": None, "time_s": retrain_s},
                              ref, ref))
        reference.append(_row({**base, "strategy": "original", "selector": "-", "fraction": None, "time_s": 0.0},
                              _scores(suite, original, data), ref))

        # selection features are computed once per kind and charged to every coreset run that uses them
        features: dict[str, tuple[Any, float]] = {}
        # selectors that read only the row count (random) get no features and are charged no feature time
        kinds = {name: sel.default_features for name in cfg.selectors
                 if (sel := get_selector(name)).needs_features}
        for kind in sorted(set(kinds.values())):
            t0 = time.perf_counter()
            opts = {"proj_dim": cfg.proj_dim} if kind == "gradients" else {}
            feats = features_from_model(original, data["forget"], kind=kind, seed=seed, **opts)
            features[kind] = (feats, time.perf_counter() - t0)
        if shown_features is None:
            shown = features.get("embeddings") or next(iter(features.values()), None)
            if shown is None:  # only row-count selectors: embed for the report's picture, charged to no run
                shown = (features_from_model(original, data["forget"], kind="embeddings", seed=seed), 0.0)
            shown_features = np.asarray(shown[0])
            shown_labels = ytr[forget_idx].numpy()

        for strategy in cfg.strategies:
            options = {**DEFAULT_STRATEGY_OPTIONS.get(strategy, {}), **cfg.strategy_options.get(strategy, {})}
            full = ErasusUnlearner(original, strategy=strategy, selector="full", seed=seed, **options)
            full_base = {**base, "strategy": strategy, "selector": "full", "fraction": 1.0}
            try:
                with _quiet_cap():
                    full.fit(data["forget"], data["retain"], prune_ratio=1.0, progress=False, **budget)
            except NonFiniteError as exc:
                full_s = None
                rows.append(_diverged(full_base, exc))
            else:
                full_s = full.timings_["total_s"]
                rows.append(_row({**full_base, "time_s": full_s, "speedup": 1.0, **_until_fields(full)},
                                 _scores(suite, full.model_, data), ref))
            for frac in cfg.fractions:
                if frac >= 1.0:
                    continue
                for name in cfg.selectors:
                    un = ErasusUnlearner(original, strategy=strategy, selector=name, seed=seed, **options)
                    is_context = isinstance(un.make_selector(), ContextSelector)
                    feats, feat_s = (None, 0.0) if is_context or name not in kinds else features[kinds[name]]
                    run_base = {**base, "strategy": strategy, "selector": name, "fraction": frac}
                    try:
                        with _quiet_cap():
                            un.fit(data["forget"], data["retain"], prune_ratio=frac, features=feats, progress=False,
                                   **budget)
                    except NonFiniteError as exc:
                        rows.append(_diverged(run_base, exc))
                        continue
                    total = un.timings_["total_s"] + feat_s
                    speedup = full_s / total if full_s is not None and total > 0 else None
                    rows.append(_row({**run_base, "time_s": total, "speedup": speedup, **_until_fields(un)},
                                     _scores(suite, un.model_, data), ref))
                    if seed == cfg.seeds[0] and strategy == cfg.strategies[0] and un.selection_ is not None:
                        selections[f"{name} {frac:.0%}"] = un.selection_.indices
            log(f"seed {seed}: {strategy} done")
    return {"rows": rows, "reference": reference, "selections": selections, "features": shown_features,
            "labels": shown_labels, "config": cfg.to_dict()}


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean ± std over seeds per (scenario, strategy, selector, fraction)."""
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[(r["scenario"], r["strategy"], r["selector"], r["fraction"])].append(r)
    out = []
    for (scenario, strategy, selector, fraction), rs in groups.items():
        s: dict[str, Any] = {"scenario": scenario, "strategy": strategy, "selector": selector, "fraction": fraction,
                             "seeds": len(rs), "diverged": sum(1 for r in rs if r.get("diverged"))}
        for key in ("forget_acc", "retain_acc", "test_acc", "mia", "avg_gap", "time_s", "speedup"):
            vals = [r[key] for r in rs if r.get(key) is not None]
            if vals:
                s[key] = float(np.mean(vals))
                s[key + "_std"] = float(np.std(vals))
        out.append(s)
    return out
