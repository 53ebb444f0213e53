"""Metrics of text-to-image generation after concept erasure (ESD, UCE, Concept Ablation, SalUn papers' protocol).

Pure functions on images / features / embeddings, and registry classes that generate images from a model with
fixed seeds first (:func:`generate_images`) and hand them to the functions:

* erasure accuracy: the share of images generated from the erased concept's prompts that a supplied classifier
  still assigns to that concept (ESD's and UCE's object-erasure tables; lower is better);
* retained accuracy: the share of images generated from other concepts' prompts the classifier assigns to the
  concept their prompt names;
* CLIP score (Hessel et al., EMNLP 2021, as torchmetrics computes it): ``mean_i max(100 * cos(E_I(x_i), E_T(p_i)), 0)``
  with a supplied CLIP model;
* FID (Heusel et al., NeurIPS 2017): ``||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^{1/2})`` on features of a
  supplied extractor, with ``scipy.linalg.sqrtm`` and the eps-on-the-diagonal retry of clean-fid's
  ``cleanfid/fid.py::frechet_distance`` (GaParmar/clean-fid);
* KID (Binkowski et al., ICLR 2018): the unbiased MMD^2 with the cubic polynomial kernel
  ``k(x, y) = (x.y / d + 1)^3``, averaged over random subsets exactly as clean-fid's ``kernel_distance``;
* generation distance: per-pair pixel L2 / MSE and feature L2 between a model's and the original model's images
  for the same prompts and seeds (the "LPIPS-free" preservation check on retain prompts).

Neither clean-fid nor torch-fidelity is used as a dependency: both load their Inception network by download,
and here the feature extractor is supplied by the user (the measured run uses its own classifier).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from ..errors import ErasusTypeError, InvalidInputError, NonFiniteError
from ..registry import register_metric
from .base import Metric

__all__ = [
    "CLIPScoreMetric",
    "ErasureAccuracyMetric",
    "FIDMetric",
    "GenerationDistanceMetric",
    "KIDMetric",
    "RetainedAccuracyMetric",
    "clip_score",
    "concept_accuracy",
    "feature_statistics",
    "frechet_distance",
    "frechet_distance_from_features",
    "generate_images",
    "generation_distance",
    "kernel_inception_distance",
    "mmd2_unbiased",
]


# --------------------------------------------------------------------------- validation
def _features(x: Any, name: str, *, min_rows: int = 1) -> np.ndarray:
    a = np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] < min_rows or a.shape[1] < 1:
        raise InvalidInputError(f"{name} must be an (n, d) feature matrix with n >= {min_rows}, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise NonFiniteError(f"{name} contains NaN or infinity")
    return a


def _prompts(prompts: Any, name: str = "prompts") -> list[str]:
    if isinstance(prompts, str):
        prompts = [prompts]
    if not isinstance(prompts, Sequence) or not prompts or not all(isinstance(p, str) for p in prompts):
        raise InvalidInputError(f"{name} must be a non-empty list of strings, got {prompts!r:.80}")
    return list(prompts)


def _seeds(seeds: Any) -> tuple[int, ...]:
    if isinstance(seeds, int):
        seeds = (seeds,)
    out = tuple(seeds)
    if not out or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 0 for s in out):
        raise InvalidInputError(f"seeds must be a non-empty list of non-negative ints, got {seeds!r}")
    return tuple(int(s) for s in out)


# --------------------------------------------------------------------------- pure functions
def concept_accuracy(predictions: Any, concept: Any) -> float:
    """Share of ``predictions`` (class indices, or (n, C) logits) equal to ``concept`` (one int or one per sample)."""
    p = torch.as_tensor(predictions)
    if p.ndim == 2:
        p = p.argmax(1)
    if p.ndim != 1 or p.numel() == 0:
        raise InvalidInputError(f"predictions must be (n,) class indices or (n, C) logits, got shape {tuple(p.shape)}")
    c = torch.as_tensor(concept)
    if c.ndim not in (0, 1) or (c.ndim == 1 and c.shape[0] != p.shape[0]):
        raise InvalidInputError(f"concept must be one class index or one per prediction ({p.shape[0]}), "
                                f"got shape {tuple(c.shape)}")
    return float((p.long() == c.long()).double().mean())


def clip_score(image_emb: Any, text_emb: Any) -> float:
    """CLIPScore as torchmetrics defines it: ``mean_i max(100 * cos(image_i, text_i), 0)`` over matched pairs."""
    v, t = torch.as_tensor(image_emb).double(), torch.as_tensor(text_emb).double()
    if v.ndim != 2 or v.shape != t.shape or v.shape[0] == 0:
        raise InvalidInputError(f"image_emb and text_emb must be (n, d) with the same shape, got {tuple(v.shape)} "
                                f"and {tuple(t.shape)}")
    if not (torch.isfinite(v).all() and torch.isfinite(t).all()):
        raise NonFiniteError("CLIP embeddings contain NaN or infinity")
    cos = torch.nn.functional.cosine_similarity(v, t, dim=1)
    return float((100 * cos).clamp_min(0).mean())


def feature_statistics(features: Any) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance (``np.cov(rowvar=False)``, as pytorch-fid / clean-fid) of (n, d) features."""
    f = _features(features, "features", min_rows=2)
    return f.mean(0), np.atleast_2d(np.cov(f, rowvar=False))


def frechet_distance(mu1: Any, sigma1: Any, mu2: Any, sigma2: Any, *, eps: float = 1e-6) -> float:
    """Frechet distance of two Gaussians, ``||mu1 - mu2||^2 + Tr(S1 + S2 - 2 sqrtm(S1 S2))`` (clean-fid's code).

    A singular product gets ``eps * I`` added to both covariances before the square root, as clean-fid does; the
    tiny imaginary part ``sqrtm`` returns on near-singular input is dropped (an error above 1e-3, as in clean-fid).
    """
    from scipy import linalg

    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.ndim != 1 or mu1.shape != mu2.shape or s1.shape != (mu1.size, mu1.size) or s1.shape != s2.shape:
        raise InvalidInputError(f"means must be (d,) and covariances (d, d) with one d; got {mu1.shape}, {s1.shape}, "
                                f"{mu2.shape}, {s2.shape}")
    if not all(np.isfinite(a).all() for a in (mu1, mu2, s1, s2)):
        raise NonFiniteError("Gaussian statistics contain NaN or infinity")
    diff = mu1 - mu2
    covmean = linalg.sqrtm(s1 @ s2)
    if not np.isfinite(covmean).all():
        offset = np.eye(s1.shape[0]) * eps
        covmean = linalg.sqrtm((s1 + offset) @ (s2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise InvalidInputError(f"sqrtm(S1 S2) has an imaginary component of {np.max(np.abs(covmean.imag)):.3g}; "
                                    "the covariances are not positive semi-definite")
        covmean = covmean.real
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def frechet_distance_from_features(features_a: Any, features_b: Any, *, eps: float = 1e-6) -> float:
    """FID of two feature sets (n_a, d) and (n_b, d): :func:`frechet_distance` of their :func:`feature_statistics`."""
    a, b = _features(features_a, "features_a", min_rows=2), _features(features_b, "features_b", min_rows=2)
    if a.shape[1] != b.shape[1]:
        raise InvalidInputError(f"feature sets differ in dimension: {a.shape[1]} vs {b.shape[1]}")
    return frechet_distance(*feature_statistics(a), *feature_statistics(b), eps=eps)


def _poly_kernel(x: np.ndarray, y: np.ndarray, degree: int, gamma: float | None, coef0: float) -> np.ndarray:
    g = 1.0 / x.shape[1] if gamma is None else gamma
    return (g * (x @ y.T) + coef0) ** degree


def mmd2_unbiased(x: Any, y: Any, *, degree: int = 3, gamma: float | None = None, coef0: float = 1.0) -> float:
    """Unbiased MMD^2 with the polynomial kernel ``(gamma x.y + coef0)^degree`` (gamma defaults to 1/d):
    ``sum_{i!=j} k(x_i,x_j)/(m(m-1)) + sum_{i!=j} k(y_i,y_j)/(n(n-1)) - 2 sum_ij k(x_i,y_j)/(mn)``."""
    a, b = _features(x, "x", min_rows=2), _features(y, "y", min_rows=2)
    if a.shape[1] != b.shape[1]:
        raise InvalidInputError(f"feature sets differ in dimension: {a.shape[1]} vs {b.shape[1]}")
    m, n = a.shape[0], b.shape[0]
    kxx, kyy, kxy = (_poly_kernel(u, v, degree, gamma, coef0) for u, v in ((a, a), (b, b), (a, b)))
    return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
                 - 2 * kxy.sum() / (m * n))


def kernel_inception_distance(features_a: Any, features_b: Any, *, num_subsets: int = 100,
                              max_subset_size: int = 1000, seed: int = 0) -> dict[str, float]:
    """KID as clean-fid's ``kernel_distance``: unbiased cubic-kernel MMD^2 on ``num_subsets`` random subsets of
    ``m = min(n_a, n_b, max_subset_size)`` rows of each set (drawn without replacement, seeded).

    Keys ``kid`` (the mean over subsets, clean-fid's number) and ``kid_std`` (their standard deviation, as
    torch-fidelity reports it).
    """
    a, b = _features(features_a, "features_a", min_rows=2), _features(features_b, "features_b", min_rows=2)
    if a.shape[1] != b.shape[1]:
        raise InvalidInputError(f"feature sets differ in dimension: {a.shape[1]} vs {b.shape[1]}")
    if not isinstance(num_subsets, int) or num_subsets < 1 or not isinstance(max_subset_size, int) \
            or max_subset_size < 2:
        raise InvalidInputError(f"num_subsets must be >= 1 and max_subset_size >= 2, got {num_subsets!r}, "
                                f"{max_subset_size!r}")
    m = min(a.shape[0], b.shape[0], max_subset_size)
    rng = np.random.default_rng(seed)
    vals = [mmd2_unbiased(a[rng.choice(a.shape[0], m, replace=False)], b[rng.choice(b.shape[0], m, replace=False)])
            for _ in range(num_subsets)]
    return {"kid": float(np.mean(vals)), "kid_std": float(np.std(vals))}


def generation_distance(images: Any, reference_images: Any, *, features: Any = None,
                        reference_features: Any = None) -> dict[str, float]:
    """Paired distances between images generated for the same prompts and seeds by two models.

    ``pixel_l2`` = mean_i ||x_i - r_i||_2, ``pixel_mse`` = mean over all pixels of (x - r)^2 and, given features
    of both sets, ``feature_l2`` = mean_i ||f(x_i) - f(r_i)||_2.
    """
    x, r = torch.as_tensor(images).double(), torch.as_tensor(reference_images).double()
    if x.shape != r.shape or x.ndim < 2 or x.shape[0] == 0:
        raise InvalidInputError(f"images and reference_images must have one shape (n, ...), got {tuple(x.shape)} "
                                f"and {tuple(r.shape)}")
    if not (torch.isfinite(x).all() and torch.isfinite(r).all()):
        raise NonFiniteError("images contain NaN or infinity")
    d = (x - r).flatten(1)
    out = {"pixel_l2": float(d.norm(dim=1).mean()), "pixel_mse": float(d.square().mean())}
    if (features is None) != (reference_features is None):
        raise InvalidInputError("pass both features and reference_features, or neither")
    if features is not None:
        f, g = _features(features, "features"), _features(reference_features, "reference_features")
        if f.shape != g.shape or f.shape[0] != x.shape[0]:
            raise InvalidInputError(f"features must be (n, d) for the same n images, got {f.shape} and {g.shape}")
        out["feature_l2"] = float(np.linalg.norm(f - g, axis=1).mean())
    return out


# --------------------------------------------------------------------------- generation
def _is_wrapper(model: Any) -> bool:
    """An erasus :class:`~erasus.models.StableDiffusionWrapper` (or anything with its sampling interface)."""
    return all(hasattr(model, a) for a in ("sample", "decode", "latent_shape", "scheduler"))


def _wrapper_images(model: Any, prompts: list[str], gens: list[torch.Generator], kwargs: dict[str, Any]) -> Any:
    import copy

    sched = copy.deepcopy(model.scheduler)
    sched.set_timesteps(int(kwargs.get("num_inference_steps", 50)))
    noise = torch.stack([torch.randn(tuple(model.latent_shape), generator=g) for g in gens])
    latents = (noise * sched.init_noise_sigma).to(model.device, model.dtype)
    out, _ = model.sample(prompts, latents=latents, **kwargs)
    return model.decode(out)


def _pipeline_of(model: Any) -> Any:
    for attr in ("pipeline", "pipe"):
        inner = getattr(model, attr, None)
        if inner is not None and callable(inner):
            return inner
    return model if callable(model) and hasattr(model, "unet") and hasattr(model, "scheduler") else None


def generate_images(model: Any, prompts: Any, *, seed: int, batch_size: int = 64,
                    postprocess: Callable[[torch.Tensor], torch.Tensor] | None = None,
                    **generate_kwargs: Any) -> torch.Tensor:
    """Images (n, C, H, W) float32 for ``prompts``, image ``i`` from its own generator seeded ``seed * 1_000_003 + i``
    (so a prompt's image does not depend on the batch it falls in, and repeated prompts give different images).

    ``model`` is an erasus :class:`~erasus.models.StableDiffusionWrapper` (the initial noise of image ``i`` drawn
    from its generator, then ``model.sample(..., latents=...)`` and ``model.decode``: images in [0, 1]; with a
    stochastic scheduler such as DDPM the later noise is shared by the batch, so only deterministic samplers like
    DDIM make images independent of the batching), a diffusers pipeline, a wrapper exposing one as ``.pipeline`` /
    ``.pipe``, or a callable ``fn(prompts, generators=...) -> images``. ``generate_kwargs`` go to the sampling call
    (``num_inference_steps``, ``guidance_scale``...; for a pipeline the default ``output_type="pt"`` gives decoded
    images in [0, 1]); ``postprocess`` maps each batch afterwards (e.g. a pixel-space pipeline's
    ``output_type="latent"`` output from [-1, 1] to [0, 1]).
    """
    prompts = _prompts(prompts)
    (seed,) = _seeds(seed)
    if not isinstance(batch_size, int) or batch_size <= 0:
        raise InvalidInputError(f"batch_size must be a positive int, got {batch_size!r}")
    wrapper = _is_wrapper(model)
    pipe = None if wrapper else _pipeline_of(model)
    if not wrapper and pipe is None and not callable(model):
        raise ErasusTypeError(f"cannot generate images with a {type(model).__name__}; pass a diffusers pipeline, a "
                              "wrapper with .pipeline, or a callable fn(prompts, generators=...)")
    out = []
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start:start + batch_size]
        gens = [torch.Generator().manual_seed(seed * 1_000_003 + start + i) for i in range(len(chunk))]
        if wrapper:
            with torch.no_grad():
                imgs = _wrapper_images(model, chunk, gens, generate_kwargs)
        elif pipe is not None:
            kwargs = {"output_type": "pt", **generate_kwargs}
            if hasattr(pipe, "set_progress_bar_config"):
                pipe.set_progress_bar_config(disable=True)
            with torch.no_grad():
                imgs = pipe(chunk, generator=gens, **kwargs).images
        else:
            with torch.no_grad():
                imgs = model(chunk, generators=gens, **generate_kwargs)
        imgs = torch.as_tensor(imgs) if not isinstance(imgs, torch.Tensor) else imgs
        if postprocess is not None:
            imgs = postprocess(imgs)
        out.append(imgs.detach().float().cpu())
    images = torch.cat(out)
    if images.ndim != 4 or images.shape[0] != len(prompts):
        raise InvalidInputError(f"the model returned images of shape {tuple(images.shape)} for {len(prompts)} "
                                "prompts; expected (n, C, H, W)")
    if not torch.isfinite(images).all():
        raise NonFiniteError("the model generated NaN or infinite pixels")
    return images


def _apply(fn: Callable[[torch.Tensor], Any], images: torch.Tensor, batch_size: int) -> torch.Tensor:
    outs = []
    with torch.no_grad():
        for i in range(0, images.shape[0], batch_size):
            outs.append(torch.as_tensor(fn(images[i:i + batch_size])).detach().float().cpu())
    return torch.cat(outs)


class _GenerationMetric(Metric):
    """Shared options: ``seeds`` for sampling (one image per prompt and seed; results averaged over seeds, their
    spread reported as ``*_std``), ``generate_kwargs`` / ``postprocess`` forwarded to :func:`generate_images`."""

    def __init__(self, *, seeds: Sequence[int] = (0, 1, 2), generate_kwargs: dict[str, Any] | None = None,
                 postprocess: Callable[[torch.Tensor], torch.Tensor] | None = None, batch_size: int = 64,
                 device: Any = None) -> None:
        super().__init__(batch_size=batch_size, device=device)
        self.seeds = _seeds(seeds)
        self.generate_kwargs = dict(generate_kwargs or {})
        self.postprocess = postprocess

    def _generate(self, model: Any, prompts: list[str], seed: int) -> torch.Tensor:
        return generate_images(model, prompts, seed=seed, batch_size=self.batch_size, postprocess=self.postprocess,
                               **self.generate_kwargs)

    @staticmethod
    def _summary(key: str, per_seed: dict[int, float]) -> dict[str, float]:
        vals = np.array(list(per_seed.values()))
        out = {key: float(vals.mean()), f"{key}_std": float(vals.std())}
        out.update({f"{key}_seed{s}": float(v) for s, v in per_seed.items()})
        return out


def _callable(obj: Any, name: str) -> Callable[[torch.Tensor], Any]:
    if not callable(obj):
        raise ErasusTypeError(f"{name} must be a callable (an nn.Module or function of an image batch), got "
                              f"{type(obj).__name__}")
    return obj


@register_metric("erasure_accuracy")
class ErasureAccuracyMetric(_GenerationMetric):
    """Erasure accuracy (ESD, Gandikota et al., ICCV 2023, Table 1): the share of images generated from the erased
    concept's prompts that ``classifier`` (images -> logits, after ``preprocess``) assigns to class ``concept``.

    ``compute(model, prompts)`` -> ``erasure_accuracy`` (mean over seeds, lower = more erased), ``_std`` and
    per-seed values.
    """

    group = "forgetting"

    def __init__(self, *, classifier: Any, concept: int,
                 preprocess: Callable[[torch.Tensor], torch.Tensor] | None = None, **options: Any) -> None:
        super().__init__(**options)
        self.classifier = _callable(classifier, "classifier")
        if not isinstance(concept, (int, np.integer)) or isinstance(concept, bool) or concept < 0:
            raise InvalidInputError(f"concept must be a non-negative class index, got {concept!r}")
        self.concept = int(concept)
        self.preprocess = preprocess

    def _predict(self, images: torch.Tensor) -> torch.Tensor:
        x = self.preprocess(images) if self.preprocess is not None else images
        logits = _apply(self.classifier, x, self.batch_size)
        if logits.ndim != 2:
            raise InvalidInputError(f"the classifier must return (n, C) logits, got shape {tuple(logits.shape)}")
        return logits

    def compute(self, model: Any, prompts: Any) -> dict[str, float]:  # type: ignore[override]
        prompts = _prompts(prompts)
        per_seed = {}
        for s in self.seeds:
            logits = self._predict(self._generate(model, prompts, s))
            if self.concept >= logits.shape[1]:
                raise InvalidInputError(f"concept {self.concept} is not a class of the classifier "
                                        f"({logits.shape[1]} classes)")
            per_seed[s] = concept_accuracy(logits, self.concept)
        return self._summary("erasure_accuracy", per_seed)


@register_metric("retained_accuracy")
class RetainedAccuracyMetric(ErasureAccuracyMetric):
    """Retained-concept accuracy (ESD / UCE, Gandikota et al. 2023-2024): the share of images generated from
    non-erased prompts that ``classifier`` assigns to the class each prompt names.

    ``compute(model, prompts, labels)`` (one class index per prompt) -> ``retained_accuracy``, ``_std``, per seed.
    """

    group = "utility"

    def __init__(self, *, classifier: Any, preprocess: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 **options: Any) -> None:
        super().__init__(classifier=classifier, concept=0, preprocess=preprocess, **options)

    def compute(self, model: Any, prompts: Any, labels: Any = None) -> dict[str, float]:  # type: ignore[override]
        prompts = _prompts(prompts)
        lab = torch.as_tensor(labels if labels is not None else [], dtype=torch.long)
        if lab.ndim != 1 or lab.shape[0] != len(prompts) or (lab < 0).any():
            raise InvalidInputError(f"labels must give one non-negative class index per prompt ({len(prompts)}), "
                                    f"got {labels!r:.80}")
        per_seed = {}
        for s in self.seeds:
            logits = self._predict(self._generate(model, prompts, s))
            if int(lab.max()) >= logits.shape[1]:
                raise InvalidInputError(f"label {int(lab.max())} is not a class of the classifier "
                                        f"({logits.shape[1]} classes)")
            per_seed[s] = concept_accuracy(logits, lab)
        return self._summary("retained_accuracy", per_seed)


@register_metric("clip_score")
class CLIPScoreMetric(_GenerationMetric):
    """CLIP score (Hessel et al., EMNLP 2021; torchmetrics' ``100 * max(cos, 0)``) of generated images against
    their prompts with a supplied ``transformers.CLIPModel`` and its processor (any object whose
    ``__call__(text=..., images=..., return_tensors="pt")`` returns model inputs).

    ``compute(model, prompts)`` -> ``clip_score`` (mean over seeds), ``_std``, per seed.
    """

    def __init__(self, *, clip_model: Any, processor: Any, **options: Any) -> None:
        super().__init__(**options)
        if not (hasattr(clip_model, "get_image_features") and hasattr(clip_model, "get_text_features")):
            raise ErasusTypeError(f"clip_model must be a CLIP model with get_image_features / get_text_features, "
                                  f"got {type(clip_model).__name__}")
        self.clip_model = clip_model
        self.processor = _callable(processor, "processor")

    def _embed(self, images: torch.Tensor, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        imgs = [im.clamp(0, 1).permute(1, 2, 0).numpy() for im in images]
        inputs = self.processor(text=prompts, images=imgs, return_tensors="pt", padding=True,
                                do_rescale=False)
        with torch.no_grad():
            v = self.clip_model.get_image_features(pixel_values=inputs["pixel_values"])
            t = self.clip_model.get_text_features(input_ids=inputs["input_ids"],
                                                  attention_mask=inputs.get("attention_mask"))
        return _as_embedding(v), _as_embedding(t)

    def compute(self, model: Any, prompts: Any) -> dict[str, float]:  # type: ignore[override]
        prompts = _prompts(prompts)
        per_seed = {}
        for s in self.seeds:
            images = self._generate(model, prompts, s)
            v, t = zip(*(self._embed(images[i:i + self.batch_size], prompts[i:i + self.batch_size])
                         for i in range(0, len(prompts), self.batch_size)), strict=True)
            per_seed[s] = clip_score(torch.cat(v), torch.cat(t))
        return self._summary("clip_score", per_seed)


def _as_embedding(out: Any) -> torch.Tensor:
    # transformers >= 5 may return a model output with the projected embedding as pooler_output
    if isinstance(out, torch.Tensor):
        return out
    pooled = getattr(out, "pooler_output", None)
    if isinstance(pooled, torch.Tensor):
        return pooled
    raise ErasusTypeError(f"the CLIP model returned {type(out).__name__}, not an embedding tensor")


class _ReferenceFeatureMetric(_GenerationMetric):
    def __init__(self, *, feature_extractor: Any, reference: Any, reference_is_features: bool = False,
                 **options: Any) -> None:
        super().__init__(**options)
        self.feature_extractor = _callable(feature_extractor, "feature_extractor")
        if reference_is_features:
            self.reference_features = _features(reference, "reference", min_rows=2)
        else:
            ref = torch.as_tensor(reference)
            if ref.ndim != 4 or ref.shape[0] < 2:
                raise InvalidInputError(f"reference must be (n >= 2, C, H, W) images (or pass "
                                        f"reference_is_features=True), got shape {tuple(ref.shape)}")
            self.reference_features = _features(_apply(self.feature_extractor, ref.float(), self.batch_size),
                                                "reference features", min_rows=2)

    def _gen_features(self, model: Any, prompts: list[str], seed: int) -> np.ndarray:
        feats = _apply(self.feature_extractor, self._generate(model, prompts, seed), self.batch_size)
        return _features(feats.flatten(1), "generated features", min_rows=2)


@register_metric("fid")
class FIDMetric(_ReferenceFeatureMetric):
    """FID (Heusel et al., NeurIPS 2017) between images generated from ``prompts`` and ``reference`` images (or
    features), on features of a supplied ``feature_extractor``; clean-fid's ``frechet_distance`` math.

    ``compute(model, prompts)`` -> ``fid`` (mean over seeds), ``_std``, per seed.
    """

    def compute(self, model: Any, prompts: Any) -> dict[str, float]:  # type: ignore[override]
        prompts = _prompts(prompts)
        per_seed = {s: frechet_distance_from_features(self._gen_features(model, prompts, s), self.reference_features)
                    for s in self.seeds}
        return self._summary("fid", per_seed)


@register_metric("kid")
class KIDMetric(_ReferenceFeatureMetric):
    """KID (Binkowski et al., ICLR 2018): clean-fid's subset-averaged unbiased cubic-kernel MMD^2 between features
    of generated and reference images. ``compute(model, prompts)`` -> ``kid`` (mean over seeds), ``_std``, per seed.
    """

    def __init__(self, *, num_subsets: int = 100, max_subset_size: int = 1000, **options: Any) -> None:
        super().__init__(**options)
        self.num_subsets, self.max_subset_size = num_subsets, max_subset_size

    def compute(self, model: Any, prompts: Any) -> dict[str, float]:  # type: ignore[override]
        prompts = _prompts(prompts)
        per_seed = {s: kernel_inception_distance(self._gen_features(model, prompts, s), self.reference_features,
                                                 num_subsets=self.num_subsets, max_subset_size=self.max_subset_size,
                                                 seed=s)["kid"]
                    for s in self.seeds}
        return self._summary("kid", per_seed)


@register_metric("generation_distance")
class GenerationDistanceMetric(_GenerationMetric):
    """Pixel / feature distance to the original model's generations on the same prompts and seeds (the
    preservation check of ESD / UCE without LPIPS): ``pixel_l2``, ``pixel_mse`` and, with ``feature_extractor``,
    ``feature_l2`` (see :func:`generation_distance`), each averaged over seeds.

    ``compute(model, prompts, reference_model=original)``.
    """

    group = "utility"

    def __init__(self, *, feature_extractor: Any = None, **options: Any) -> None:
        super().__init__(**options)
        self.feature_extractor = None if feature_extractor is None else _callable(feature_extractor,
                                                                                  "feature_extractor")

    def compute(self, model: Any, prompts: Any, *,  # type: ignore[override]
                reference_model: Any = None) -> dict[str, float]:
        prompts = _prompts(prompts)
        if reference_model is None:
            raise InvalidInputError("generation_distance needs reference_model= (the original model)")
        per_seed: dict[str, dict[int, float]] = {}
        for s in self.seeds:
            x, r = self._generate(model, prompts, s), self._generate(reference_model, prompts, s)
            kw = {}
            if self.feature_extractor is not None:
                kw = {"features": _apply(self.feature_extractor, x, self.batch_size).flatten(1),
                      "reference_features": _apply(self.feature_extractor, r, self.batch_size).flatten(1)}
            for k, v in generation_distance(x, r, **kw).items():
                per_seed.setdefault(k, {})[s] = v
        out: dict[str, float] = {}
        for k, vals in per_seed.items():
            out.update(self._summary(k, vals))
        return out
