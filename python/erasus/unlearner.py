"""``ErasusUnlearner``: selection → weighted coreset → strategy, behind one object.

>>> unlearner = erasus.ErasusUnlearner(model, strategy="grad_diff", selector="craig", prune_ratio=0.1)
>>> unlearned = unlearner.fit(forget_data=forget, retain_data=retain)
>>> unlearner.evaluate(forget, retain, test, reference_model=retrained)   # {'mia_accuracy': ..., ...}

``fit`` computes selection features for the forget set under the model (per-sample gradients or
embeddings, see :mod:`erasus.features`), picks ``prune_ratio`` of it with the selector, and runs the
strategy on that coreset with the selector's weights (a CRAIG coreset's cluster sizes make the weighted
coreset loss approximate the full forget loss). ``prune_ratio=1`` (or ``selector="full"``) unlearns on
the whole forget set.
"""

from __future__ import annotations

import copy
import json
import os
import time
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import numpy as np
import torch

from .certification.certificate import Certificate, certificate_of, hash_model
from .data import as_dataset, subset
from .data.paths import load_path
from .errors import ErasusTypeError, InvalidInputError
from .registry import get_selector, get_strategy
from .selection import Selection, resolve_k
from .selectors._common import ContextSelector
from .selectors.base import Selector, features_from_model
from .strategies.until import History

__all__ = ["ErasusUnlearner", "as_data"]

FeatureKind = Literal["gradients", "embeddings"]
DEFAULT_METRICS = ("accuracy", "mia", "mia_efficacy")


def as_data(data: Any) -> Any:
    """A dataset from a path (see :mod:`erasus.data.paths`) or from anything :func:`erasus.data.as_dataset` takes."""
    if isinstance(data, (str, os.PathLike)):
        return load_path(data)
    return as_dataset(data)


#: config.json model_types erasus.models.audio.load_audio_model loads (Whisper, wav2vec2 / HuBERT classifiers)
_AUDIO_TYPES = ("whisper", "wav2vec2", "hubert")
#: config.json model_type -> the erasus wrapper a local folder loads as (CLIP-family types: is_clip_config)
_VISION_LANGUAGE = {"llava": "LLaVAWrapper", "blip-2": "BLIP2Wrapper", "blip": "BLIPWrapper"}


def _model_type(folder: Path) -> str | None:
    import json

    config = folder / "config.json"
    if not config.is_file():
        return None
    try:
        return json.loads(config.read_text()).get("model_type")
    except (OSError, ValueError):
        return None


def _load_named_model(model_name: Any, *, device: Any) -> tuple[torch.nn.Module, Any]:
    """``(model, tokenizer)`` for ``model_name``, with path mistakes and loader failures as erasus errors; a local
    CLIP checkpoint (by its config) becomes a :class:`~erasus.models.CLIPWrapper` with its processor, a diffusers
    pipeline folder (its ``model_index.json``) a :class:`~erasus.models.StableDiffusionWrapper` with its tokenizer, a
    local VideoMAE checkpoint a :class:`~erasus.models.VideoMAEWrapper`."""
    from .models import (CLIPWrapper, StableDiffusionWrapper, VideoMAEWrapper, is_clip_config, is_diffusion_folder,
                         is_videomae_config, load_causal_lm)

    if not isinstance(model_name, (str, os.PathLike)) or not str(model_name):
        raise ErasusTypeError(f"model_name must be a hub id or a local folder, got {model_name!r}")
    text = str(model_name)
    looks_local = isinstance(model_name, os.PathLike) or text.startswith((".", "/", "~")) or os.path.isabs(text)
    if looks_local and not Path(text).expanduser().exists():
        raise InvalidInputError(f"model_name {text!r} is a path that does not exist")
    if looks_local and is_diffusion_folder(Path(text).expanduser()):
        diffusion = StableDiffusionWrapper(Path(text).expanduser(), device=device)
        return diffusion, diffusion.tokenizer
    if looks_local and is_clip_config(Path(text).expanduser()):
        clip = CLIPWrapper(Path(text).expanduser(), device=device)
        return clip, clip.processor
    wrapper = _VISION_LANGUAGE.get(_model_type(Path(text).expanduser())) if looks_local else None
    if wrapper is not None:
        from . import models

        loaded = getattr(models, wrapper)(Path(text).expanduser(), device=device)
        return loaded, getattr(loaded, "tokenizer", None) or loaded.processor
    if looks_local and _model_type(Path(text).expanduser()) in _AUDIO_TYPES:
        from .models.audio import load_audio_model

        return load_audio_model(Path(text).expanduser(), device=device)
    if looks_local and is_videomae_config(Path(text).expanduser()):
        video = VideoMAEWrapper(Path(text).expanduser(), device=device)
        return video, video.processor
    try:
        return load_causal_lm(Path(text).expanduser() if looks_local else text, device=device)
    except OSError as exc:
        raise InvalidInputError(
            f"could not load model_name {text!r}: {exc}. Check the id or give a local folder holding config.json "
            "and weights (offline: set HF_HUB_OFFLINE=1 to fail fast instead of retrying the hub)"
        ) from None


def _is_qa_records(data: Any) -> bool:
    """A non-empty list / ``datasets`` dataset whose first item has image, question and answer entries."""
    if isinstance(data, (str, bytes, os.PathLike, torch.Tensor, np.ndarray, torch.utils.data.DataLoader, Mapping)):
        return False
    try:
        first = data[0] if len(data) else None
    except (TypeError, KeyError, IndexError):
        return False
    return isinstance(first, Mapping) and all(k in first for k in ("image", "question", "answer"))


def _labels_of(dataset: Any) -> np.ndarray | None:
    """Integer labels of a classification dataset of ``(x, y)`` items, else ``None``."""
    tensors = getattr(dataset, "tensors", None)
    if tensors is not None and len(tensors) >= 2 and not torch.is_floating_point(tensors[1]):
        return tensors[1].cpu().numpy()
    return None


class ErasusUnlearner:
    """Coreset unlearning in one call.

    Args:
        model: the trained ``nn.Module`` (or give ``model_name`` instead).
        model_name: a transformers model id or local folder, loaded by its config: a CLIP checkpoint as an
            :class:`erasus.models.CLIPWrapper` with its processor, a LLaVA / BLIP-2 / BLIP retrieval folder as
            :class:`~erasus.models.LLaVAWrapper` / :class:`~erasus.models.BLIP2Wrapper` /
            :class:`~erasus.models.BLIPWrapper`, a diffusers pipeline folder (``model_index.json``) as an
            :class:`erasus.models.StableDiffusionWrapper`, a VideoMAE checkpoint as an
            :class:`erasus.models.VideoMAEWrapper`, anything else as a causal LM (the ``llm`` extra).
        strategy: registered strategy name (``erasus.list_strategies()``) or an ``UnlearningStrategy``.
        selector: registered selector name (``erasus.list_selectors()``) or a ``Selector``; ``"auto"`` lets
            the auto-selector choose from the data's size and modality.
        task: task adapter name or instance (default: inferred from the model and data).
        prune_ratio: coreset size as a fraction of the forget set (default 0.1).
        features: ``"gradients"`` (per-sample projected gradients) or ``"embeddings"``; default: what the
            selector prefers.
        device: where to compute (default: the model's device).
        seed: seeds selection and unlearning (default 0). Privacy noise (``dp_finetune``, ``certified_newton``)
            is drawn from OS entropy unless ``seed`` is given explicitly.
        selector_options: passed to the selector.
        feature_options: passed to :mod:`erasus.features`.
        **strategy_options: the strategy's hyperparameters (``lr``, ``alpha`` ...).

    After :meth:`fit`: ``model_`` (the unlearned model), ``selection_``, ``timings_`` (seconds for features,
    selection, unlearning, total: ``*_s`` wall clock, ``*_cpu_s`` this process's CPU seconds) and ``history_`` (the strategy's loss per step; with ``fit(until=...)`` also
    the probe's trajectory ``history_.checks`` and the outcome ``history_.until``).
    """

    def __init__(
        self,
        model: torch.nn.Module | None = None,
        *,
        model_name: str | os.PathLike[str] | None = None,
        strategy: Any = "gradient_ascent",
        selector: Any = "auto",
        task: Any = None,
        prune_ratio: float = 0.1,
        features: FeatureKind | None = None,
        device: str | torch.device | None = None,
        seed: int | None = None,
        selector_options: Mapping[str, Any] | None = None,
        feature_options: Mapping[str, Any] | None = None,
        **strategy_options: Any,
    ) -> None:
        if (model is None) == (model_name is None):
            raise InvalidInputError("give exactly one of model (an nn.Module) or model_name (a model id or path)")
        if model is not None and not isinstance(model, torch.nn.Module):
            raise ErasusTypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if features not in (None, "gradients", "embeddings"):
            raise InvalidInputError(f"features must be 'gradients' or 'embeddings', got {features!r}")
        resolve_k(100, ratio=prune_ratio)  # validates the ratio early, with the same message as fit()
        # names and options are checked before a model is loaded (a hub download can take minutes)
        self.strategy = get_strategy(strategy, **strategy_options) if isinstance(strategy, str) else strategy
        if isinstance(selector, str):
            get_selector(selector, seed=0 if seed is None else int(seed), **dict(selector_options or {}))
        self.tokenizer = None
        if model_name is not None:
            model, self.tokenizer = _load_named_model(model_name, device=device)
        self.model = model
        self.selector_name = selector if isinstance(selector, str) else getattr(selector, "registry_name", "custom")
        self.selector = selector if not isinstance(selector, str) else None
        self.selector_options = dict(selector_options or {})
        self.task = task
        self.prune_ratio = float(prune_ratio)
        self.features = features
        self.device = device
        self.seed = 0 if seed is None else int(seed)
        self._seed_given = seed is not None
        self.feature_options = dict(feature_options or {})
        self.model_: torch.nn.Module | None = None
        self.selection_: Selection | None = None
        self.timings_: dict[str, float] = {}
        self.history_: History = History()

    # ----------------------------------------------------------------------------------------- fit
    def make_selector(self) -> Selector:
        """The configured selector (an instance given at construction, or a new one from the registry)."""
        if self.selector is not None:
            return self.selector
        return get_selector(self.selector_name, seed=self.seed, **self.selector_options)

    def as_data(self, data: Any) -> Any:
        """``data`` as a dataset: for a CLIP-style model with a processor, captions files / folders, COCO JSON,
        records and ``datasets`` datasets with image and text columns become model inputs
        (:func:`erasus.data.vlm.image_text_data`); for a LLaVA / BLIP-2 wrapper, ``{"image", "question",
        "answer"}`` records (a list or a ``datasets`` dataset) become its answer-loss samples; otherwise see
        :func:`as_data`."""
        from .models.mllm import MultimodalLMWrapper

        if isinstance(self.model, MultimodalLMWrapper) and _is_qa_records(data):
            return self.model.dataset(data)
        processor = getattr(self.model, "processor", None)
        if processor is not None and hasattr(processor, "image_processor") and not isinstance(
                data, (torch.utils.data.DataLoader, torch.Tensor, np.ndarray)):
            from .data.vlm import image_text_data

            return image_text_data(data, processor)
        return as_data(data)

    def select(self, forget_data: Any, *, prune_ratio: float | None = None,
               features: Any = None) -> tuple[Selection, dict[str, float]]:
        """Pick the coreset of ``forget_data`` (without unlearning); returns it with its timings."""
        forget = self.as_data(forget_data)
        n = len(forget)  # type: ignore[arg-type]
        ratio = self.prune_ratio if prune_ratio is None else prune_ratio
        k = resolve_k(n, ratio=ratio)
        timings = {"features_s": 0.0, "selection_s": 0.0, "features_cpu_s": 0.0, "selection_cpu_s": 0.0}
        if self.selector_name == "full" or k == n and self.selector is None:
            return Selection(np.arange(n), np.ones(n, dtype=np.float32), method="full"), timings
        selector = self.make_selector()
        labels = _labels_of(forget)
        if labels is not None and k < np.unique(labels).size:
            # per-class selection (CRAIG) needs a pick per class; below that, select over the whole set
            labels = None
        t0, c0 = time.perf_counter(), time.process_time()
        if features is None and not getattr(selector, "needs_features", True):
            features = np.zeros((n, 1), dtype=np.float32)  # e.g. random: only the row count is read
        if features is None and not isinstance(selector, ContextSelector):
            kind = self.features or selector.default_features
            opts = dict(self.feature_options)
            if self.task is not None:
                opts.setdefault("task", self.task)
            features = features_from_model(self.model, forget, kind=kind, seed=self.seed, **opts)
        timings["features_s"], timings["features_cpu_s"] = time.perf_counter() - t0, time.process_time() - c0
        t1, c1 = time.perf_counter(), time.process_time()
        if features is None:  # score-based selectors compute what they need from the model
            sel = selector.select(k, model=self.model, data=forget, labels=labels)
        else:
            sel = selector.select(k, features=features, labels=labels)
        timings["selection_s"], timings["selection_cpu_s"] = time.perf_counter() - t1, time.process_time() - c1
        return sel, timings

    def fit(
        self,
        forget_data: Any,
        retain_data: Any = None,
        *,
        prune_ratio: float | None = None,
        features: Any = None,
        steps: int | None = None,
        epochs: float | None = None,
        inplace: bool = False,
        progress: bool = True,
        until: Mapping[str, Any] | None = None,
        **unlearn_options: Any,
    ) -> torch.nn.Module:
        """Select the coreset of ``forget_data`` and unlearn it; returns the unlearned model (also ``model_``).

        ``forget_data`` / ``retain_data``: a Dataset, DataLoader, tensors, ``(x, y)`` arrays or a path.
        ``features``: precomputed selection features of the forget set (skips computing them).
        ``steps`` / ``epochs``: the strategy's budget (epochs are passes over the coreset); with ``until`` the cap.
        ``until``: a stopping rule (:mod:`erasus.strategies.until`), e.g. ``{"metric": "forget_accuracy",
        "below": 0.05}``; its probe defaults to the **whole** forget set, not the coreset, so a coreset run stops
        when the forgetting the user asked for is reached on everything they asked to forget. ``history_.checks``
        then holds ``{step, elapsed_s, value, met}`` per probe and ``history_.until`` the outcome.
        """
        t0, c0 = time.perf_counter(), time.process_time()
        forget = self.as_data(forget_data)
        retain = self.as_data(retain_data) if retain_data is not None else None
        if until is not None:
            if not isinstance(until, Mapping):
                raise ErasusTypeError(f"until must be a dict such as {{'metric': 'forget_accuracy', 'below': 0.05}}, "
                                      f"got {type(until).__name__}")
            until = {"data": forget, **until}
            stopping_rule = getattr(self.strategy, "stopping_rule", None)
            if stopping_rule is not None:  # a bad rule fails here, before features and selection
                stopping_rule(until, task=self.task, forget=forget, retain=retain)
            unlearn_options["until"] = until
        sel, timings = self.select(forget, prune_ratio=prune_ratio, features=features)
        full = len(sel) == len(forget)  # type: ignore[arg-type]
        coreset = forget if full else subset(forget, sel.indices)
        weights = None if full or np.allclose(sel.weights, 1.0) else torch.from_numpy(sel.weights.copy())
        t1, c1 = time.perf_counter(), time.process_time()
        model = self.strategy.unlearn(
            model=self.model, forget_data=coreset, retain_data=retain, weights=weights, steps=steps, epochs=epochs,
            inplace=inplace, device=self.device, progress=progress, **unlearn_options,
            # only an explicit seed reaches the strategy: privacy noise must not default to a public seed
            **({"seed": self.seed} if self._seed_given else {}),
        )
        timings["unlearning_s"], timings["unlearning_cpu_s"] = time.perf_counter() - t1, time.process_time() - c1
        timings["total_s"], timings["total_cpu_s"] = time.perf_counter() - t0, time.process_time() - c0
        self.model_, self.selection_, self.timings_ = model, sel, timings
        history = getattr(self.strategy, "history_", [])
        self.history_ = history.copy() if isinstance(history, History) else History(history)
        return model

    # ----------------------------------------------------------------------------------------- evaluate
    def evaluate(
        self,
        forget_data: Any,
        retain_data: Any = None,
        test_data: Any = None,
        *,
        metrics: Sequence[str] | None = None,
        reference_model: torch.nn.Module | None = None,
        model: torch.nn.Module | None = None,
    ) -> dict[str, float]:
        """Run ``metrics`` on the unlearned model (or ``model``); with ``reference_model`` also the gaps to it.

        Default metrics: ``accuracy``, ``mia`` and ``mia_efficacy`` with test data; ``accuracy`` and ``mia``
        without it. The result has ``mia_accuracy`` and ``retain_accuracy`` whenever retain data is given.

        ``mia`` without test data: no known non-members exist, so the entropy attack asks the seed
        specification's question, whether forget samples can be told apart from retain samples: a cross-fitted
        logistic regression on forget (label 1) vs retain (label 0) entropies (:func:`erasus.metrics.mia.
        entropy_mia` with retain in the non-member slot). ``mia_accuracy`` is then the out-of-fold fraction of
        forget samples the attack assigns to the forget side: ~0.5 when forget looks like retain (nothing
        forgotten), 1.0 when the model treats them apart. With ``test_data`` it is the SSD/SCRUB protocol
        (forget vs unseen test data); the two numbers answer different questions.
        """
        from .metrics import MetricSuite
        from .metrics.mia import MIAMetric

        target = model if model is not None else self.model_
        if target is None:
            raise InvalidInputError("evaluate() needs a fitted unlearner (call fit first) or model=...")
        if metrics is None:
            metrics = DEFAULT_METRICS if test_data is not None else ("accuracy", "mia")
        if isinstance(metrics, str) or not metrics or not all(isinstance(m, str) for m in metrics):
            raise InvalidInputError(f"metrics must be a non-empty list of metric names, got {metrics!r}")
        names = list(dict.fromkeys(metrics))
        if reference_model is not None and "avg_gap" not in names:
            names.append("avg_gap")
        forget = self.as_data(forget_data)
        retain = self.as_data(retain_data) if retain_data is not None else None
        test = self.as_data(test_data) if test_data is not None else None
        retain_mia = test is None and "mia" in names
        if retain_mia:
            if retain is None:
                raise InvalidInputError(
                    "the 'mia' metric needs non-members: pass test_data= (held-out samples) or retain_data= "
                    "(then it measures how far forget samples stand apart from retain ones)"
                )
            names.remove("mia")
        suite = MetricSuite(names, task=self.task) if names else None
        if suite is not None:
            missing = suite.missing_splits({"forget": forget, "retain": retain, "test": test})
            if missing:
                name, split = missing[0]
                raise InvalidInputError(f"metric {name!r} needs the {split} data set; pass {split}_data= to evaluate()")
        out: dict[str, float] = {}
        if suite is not None:
            out.update(suite.run(target, forget=forget, retain=retain, test=test, reference_model=reference_model))
        if retain_mia:
            out.update(MIAMetric(task=self.task).compute(target, forget, retain))
        return out

    # ----------------------------------------------------------------------------------------- save
    def output_files(self) -> dict[str, Any]:
        """The files :meth:`save` writes: ``name -> writer(path)``. The one place to add an output file."""
        if self.model_ is None or self.selection_ is None:
            raise InvalidInputError("save() needs a fitted unlearner; call fit() first")
        from safetensors.torch import save_file

        state = {k: v.detach().cpu().contiguous() for k, v in self.model_.state_dict().items()}
        # tied weights (e.g. LM heads) share storage; safetensors refuses shared tensors, so store copies
        seen: dict[int, str] = {}
        for key, value in list(state.items()):
            ptr = value.data_ptr()
            if ptr in seen:
                state[key] = value.clone()
            seen[ptr] = key
        config = {
            "strategy": getattr(self.strategy, "registry_name", type(self.strategy).__name__),
            "strategy_options": {k: v for k, v in getattr(self.strategy, "options", {}).items()
                                 if isinstance(v, (int, float, str, bool, type(None)))},
            "selector": self.selector_name,
            "selector_options": self.selector_options,
            "prune_ratio": self.prune_ratio,
            "features": self.features,
            "seed": self.seed,
            "timings": self.timings_,
        }
        config_text = json.dumps(config, indent=2, default=str)
        selection_text = json.dumps(self.selection_.to_dict(), default=float)
        files = {
            "model.safetensors": lambda path: save_file(state, str(path)),
            "config.json": lambda path: path.write_text(config_text),
            "selection.json": lambda path: path.write_text(selection_text),
        }
        certificate = certificate_of(self.model_, self.strategy)
        if certificate is not None and certificate.model_hash == hash_model(self.model_):
            # a certified strategy's guarantee travels with the weights it is about (and only with those)
            certificate_text = certificate.to_json()
            files["certificate.json"] = lambda path: path.write_text(certificate_text, encoding="utf-8")
        return files

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write ``model.safetensors``, ``config.json`` and ``selection.json`` into the folder ``path``, and
        ``certificate.json`` when the strategy issued a :class:`~erasus.certification.Certificate`, crash-safely.

        Each file is written beside its destination, fsync-ed and renamed into place, and ``manifest.json``
        (their sizes and SHA-256) is written last (:func:`erasus.io.write_run_folder`): a folder whose save was
        killed has no valid manifest, and :meth:`load_weights` / :meth:`load_selection` / ``erasus evaluate``
        refuse it instead of mixing an old config with a new model. Nothing is pickled; load the weights with
        :meth:`load_weights` into a model of the same architecture.
        """
        from .io import write_run_folder

        return write_run_folder(path, self.output_files())

    @staticmethod
    def load_weights(model: torch.nn.Module, path: str | os.PathLike[str]) -> torch.nn.Module:
        """Load ``model.safetensors`` of a complete :meth:`save` folder into a copy of ``model`` (the input is untouched)."""
        from .io import verify_run_folder

        verify_run_folder(path, needs=("model.safetensors",))
        state = load_safetensors(Path(path) / "model.safetensors")
        out = copy.deepcopy(model)
        try:
            out.load_state_dict(state)
        except RuntimeError as exc:
            raise InvalidInputError(f"the weights in {str(path)!r} do not fit this model: {exc}") from None
        return out

    @staticmethod
    def load_selection(path: str | os.PathLike[str]) -> Selection:
        """The coreset of a complete :meth:`save` folder."""
        from .io import verify_run_folder

        verify_run_folder(path, needs=("selection.json",))
        return Selection.from_dict(json.loads((Path(path) / "selection.json").read_text()))

    @staticmethod
    def load_certificate(path: str | os.PathLike[str]) -> Certificate | None:
        """The ``certificate.json`` :meth:`save` wrote for a certified strategy, or ``None`` if there is none.

        Only a certificate the folder's manifest lists counts: one left by an earlier save is not about these weights.
        """
        from .io import verify_run_folder

        if "certificate.json" not in verify_run_folder(path)["files"]:
            return None
        return Certificate.load(Path(path) / "certificate.json")

    @staticmethod
    def load_config(path: str | os.PathLike[str]) -> dict[str, Any]:
        """The configuration (strategy, selector, options, timings) of a complete :meth:`save` folder."""
        from .io import verify_run_folder

        verify_run_folder(path, needs=("config.json",))
        return dict(json.loads((Path(path) / "config.json").read_text()))


def load_safetensors(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """``safetensors.torch.load_file`` with a truncated or foreign file reported as an erasus error."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    p = Path(path)
    if not p.is_file():
        raise InvalidInputError(f"no weights file at {str(p)!r}")
    try:
        return load_file(str(p))
    except (SafetensorError, OSError, ValueError) as exc:
        raise InvalidInputError(f"{str(p)!r} is not a readable .safetensors file (truncated or corrupt?): {exc}") from None
