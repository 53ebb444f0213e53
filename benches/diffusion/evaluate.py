"""Evaluation of a diffusion model in the measured run: seeded generations from forget and retain prompts, judged by
the run's classifier, with FID / KID on its features and the distance to the original model's generations.

Everything goes through erasus' pure metric functions (:mod:`erasus.metrics.generation`); images are generated once
per model and seed (per-image seeds, DDIM, so the same prompt and seed give the same noise for every model).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CACHE, FMNIST_NAMES, TEMPLATES, Classifier, clip_processor, fmnist  # noqa: E402

from erasus.metrics.generation import (clip_score, concept_accuracy, frechet_distance_from_features,  # noqa: E402
                                       generate_images, generation_distance, kernel_inception_distance)

SEEDS = (0, 1, 2)
STEPS, GUIDANCE = 20, 3.0
FORGET_PER_TEMPLATE = 4  # 16 forget-prompt images per seed
RETAIN_PER_TEMPLATE = 1  # 4 per retained class and seed, 16 in all


def load_classifier() -> tuple[Classifier, list[int]]:
    st = torch.load(CACHE / "classifier.pt", weights_only=False)
    clf = Classifier(len(st["classes"]))
    clf.load_state_dict(st["state"])
    return clf.eval(), st["classes"]


_CLIP: list = []


def load_clip():
    """The run's tiny CLIP (``train.py clip``) and its processor, loaded once."""
    if not _CLIP:
        from transformers import CLIPModel

        _CLIP.extend([CLIPModel.from_pretrained(str(CACHE / "clip")).eval(), clip_processor()])
    return _CLIP[0], _CLIP[1]


def clip_score_of(images: torch.Tensor, prompts: list[str]) -> float:
    """erasus' CLIP score (``100 * max(cos, 0)`` averaged) of generated images against their prompts."""
    clip, proc = load_clip()
    inputs = proc(text=prompts, images=list(images))
    with torch.no_grad():
        v = clip.get_image_features(pixel_values=inputs["pixel_values"])
        t = clip.get_text_features(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
    v, t = (getattr(o, "pooler_output", o) for o in (v, t))
    return clip_score(v, t)


def load_wrapper(folder: Path):
    """The saved pipeline folder as an erasus wrapper, sampling with DDIM on the training schedule."""
    from diffusers import DDIMScheduler

    from erasus.models import StableDiffusionWrapper

    w = StableDiffusionWrapper(str(folder))
    w.scheduler = DDIMScheduler.from_config(w.scheduler.config, clip_sample=True)
    return w.eval()


def prompt_sets(classes: list[int], forget: int) -> tuple[list[str], list[str], list[int]]:
    """Forget prompts; retain prompts and their label (index into ``classes``)."""
    fname = FMNIST_NAMES[forget]
    forget_prompts = [t.format(fname) for t in TEMPLATES for _ in range(FORGET_PER_TEMPLATE)]
    retain_prompts, labels = [], []
    for i, c in enumerate(classes):
        if c == forget:
            continue
        for t in TEMPLATES:
            retain_prompts += [t.format(FMNIST_NAMES[c])] * RETAIN_PER_TEMPLATE
            labels += [i] * RETAIN_PER_TEMPLATE
    return forget_prompts, retain_prompts, labels


def generate(model, prompts: list[str], seed: int) -> torch.Tensor:
    return generate_images(model, prompts, seed=seed, batch_size=128, num_inference_steps=STEPS,
                           guidance_scale=GUIDANCE)


def evaluate(model, *, forget: int, original_images: dict | None = None, real_features: np.ndarray | None = None):
    """Per-seed erasure / retained accuracy, pooled FID / KID of retain-prompt images against real test images of
    the retained classes, and the distance to ``original_images`` (the original model's generations)."""
    clf, classes = load_classifier()
    fidx = classes.index(forget)
    fp, rp, labels = prompt_sets(classes, forget)
    if real_features is None:
        real_features = real_retain_features(classes, forget)
    per_seed, images, gen_feats = [], {}, []
    with torch.no_grad():
        for s in SEEDS:
            xf, xr = generate(model, fp, s), generate(model, rp, s)
            images[s] = (xf, xr)
            lf, lr = clf(xf), clf(xr)
            row = {"seed": s, "erasure_accuracy": concept_accuracy(lf, fidx),
                   "retained_accuracy": concept_accuracy(lr, torch.tensor(labels)),
                   "forget_prediction_share": np.bincount(lf.argmax(1).numpy(), minlength=len(classes)).tolist(),
                   "forget_clip_score": clip_score_of(xf, fp), "retain_clip_score": clip_score_of(xr, rp)}
            fr = clf.features(xr)
            gen_feats.append(fr.numpy())
            if original_images is not None:
                ref = original_images[s][1]
                d = generation_distance(xr, ref, features=fr, reference_features=clf.features(ref))
                row.update({f"retain_{k}": v for k, v in d.items()})
            per_seed.append(row)
    g = np.concatenate(gen_feats)
    out = {"per_seed": per_seed, "fid": frechet_distance_from_features(g, real_features),
           **kernel_inception_distance(g, real_features, num_subsets=50, max_subset_size=len(g), seed=0)}
    for key in ("erasure_accuracy", "retained_accuracy", "retain_pixel_l2", "retain_feature_l2", "forget_clip_score",
                "retain_clip_score"):
        vals = [r[key] for r in per_seed if key in r]
        if vals:
            out[key] = float(np.mean(vals))
            out[f"{key}_std"] = float(np.std(vals))
    return out, images


def real_retain_features(classes: list[int], forget: int) -> np.ndarray:
    clf, _ = load_classifier()
    x, _ = fmnist(tuple(c for c in classes if c != forget), split="test", limit_per_class=250)
    with torch.no_grad():
        return clf.features(x).numpy()
