"""Zero-shot class unlearning in CLIP with synthetic samples (Kravets & Namboodiri, WACV 2025).

No image of the class is needed: images the model itself assigns to the class are synthesised by gradient
ascent on its zero-shot logit, then the class is forgotten by a Lipschitz regulariser that makes the class's
image and text embeddings insensitive to input noise, updating only the tensors with the largest gradients.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from ...errors import ErasusTypeError, InvalidInputError
from ...registry import register_strategy
from ...tasks.contrastive import image_embeddings, logit_scale_of, text_embeddings
from ..base import Run, UnlearningStrategy, check_finite_loss
from .common import contrastive_task, tower_parameters

__all__ = ["ZeroShotClassUnlearning", "lipschitz_loss", "synthesize_class_images"]

#: CLIP's image normalisation (openai/CLIP ``clip.py`` ``_transform``), used when the model has no processor
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
#: the official code's image side; its step size and jitter are given for 224 x 224 inputs
_REFERENCE_SIDE = 224


def lipschitz_loss(image_emb: torch.Tensor, text_emb: torch.Tensor, noisy_image_emb: torch.Tensor,
                   images: torch.Tensor, noisy_images: torch.Tensor) -> torch.Tensor:
    """One noise draw of the joint Lipschitz loss of the official ``clip_forget_losses.py`` ``lipschitz_loss_joint``:

    ``K = sum_i (||t_i - v~_i|| + ||v_i - v~_i||) / (2 ||x_i - x~_i||)``

    with ``v_i`` / ``t_i`` the (unnormalised) image / class-prompt embeddings, ``x~_i = x_i + noise`` and
    ``v~_i`` its image embedding (no gradient). Small ``K`` = the class's embeddings barely react to noise.
    """
    d_in = torch.linalg.vector_norm((images - noisy_images).flatten(1), dim=1)
    d_out = torch.linalg.vector_norm(text_emb - noisy_image_emb, dim=1) + \
        torch.linalg.vector_norm(image_emb - noisy_image_emb, dim=1)
    return (d_out / (2 * d_in)).sum()


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur over H and W (``scipy.ndimage.gaussian_filter1d`` on both axes, radius 4 sigma,
    reflected borders as scipy's default)."""
    radius = max(1, int(4 * sigma + 0.5))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    pad = min(radius, x.shape[-1] - 1, x.shape[-2] - 1)
    if pad < radius:
        k = k[radius - pad:radius + pad + 1] / k[radius - pad:radius + pad + 1].sum()
    x = F.conv2d(F.pad(x, (pad, pad, 0, 0), mode="reflect"), k.reshape(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(F.pad(x, (0, 0, pad, pad), mode="reflect"), k.reshape(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def synthesize_class_images(model: torch.nn.Module, class_embeddings: torch.Tensor, target: int, *, n: int,
                            shape: tuple[int, int, int], mean: Sequence[float], std: Sequence[float],
                            steps: int = 3000, lr: float = 25.0, l2_reg: float = 1e-3, blur_every: int = 10,
                            blur_sigma: float = 0.5, max_jitter: int = 16, high_prob: float = 0.8,
                            sub_prob: float = 0.025, min_prob: float = 0.45, max_rounds: int = 20,
                            generator: torch.Generator | None = None, progress: bool = False) -> torch.Tensor:
    """Model-input images (n, C, H, W) that ``model`` assigns to class ``target`` with probability > ``high_prob``,
    by the official ``clip_forget_imagegen.py`` ``generate_images`` recipe (a class-visualisation ascent):
    from noise, ``x += lr * g / ||g||`` with ``g = grad (s * v(x) . c_target - l2_reg ||x||)``, a random jitter
    (roll) around each step, pixels clamped to the valid range and blurred every ``blur_every`` steps; an image is
    kept once its zero-shot prediction is ``target`` with ``p > high_prob``. Images not found within ``steps``
    start a new round from fresh noise with ``high_prob`` lowered by ``sub_prob`` (not below ``min_prob``).

    Deviations (erasus's): the images of a round are optimised as one batch (gradient normalised per image,
    one jitter offset per step for all); ``lr`` and ``max_jitter`` are the code's values for 224 x 224 inputs and
    are scaled to the model's size (``lr`` by ``sqrt(numel / (3 * 224^2))``, i.e. the same per-pixel step;
    ``max_jitter`` by ``side / 224``); pixels live in ``[0, 1]`` and the model sees ``(x - mean) / std``;
    ``max_rounds`` bounds the code's open-ended retry loop (an error says when the model cannot be driven there).
    """
    from tqdm.auto import tqdm

    c, h, w = shape
    mean_t = torch.tensor(mean, dtype=torch.float32).reshape(1, c, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).reshape(1, c, 1, 1)
    device = class_embeddings.device
    mean_t, std_t = mean_t.to(device), std_t.to(device)
    step = lr * math.sqrt(c * h * w / (3 * _REFERENCE_SIDE ** 2))
    jitter = max(0, int(round(max_jitter * max(h, w) / _REFERENCE_SIDE)))
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    classes = class_embeddings.detach()
    kept: list[torch.Tensor] = []
    prob = high_prob
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    bar = tqdm(total=n, desc="zero_shot_class_unlearning: synthesising images", disable=not progress, leave=False)
    try:
        for _ in range(max_rounds):
            todo = n - len(kept)
            x = (0.5 + 0.25 * torch.randn(todo, c, h, w, generator=gen)).clamp(0, 1).to(device)
            done = torch.zeros(todo, dtype=torch.bool, device=device)
            for t in range(steps):
                ox, oy = torch.randint(0, jitter + 1, (2,), generator=gen).tolist()
                x = torch.roll(x, shifts=(oy, ox), dims=(2, 3)).requires_grad_(True)
                v = F.normalize(image_embeddings(model, (x - mean_t) / std_t).float(), dim=-1)
                score = logit_scale_of(model).to(device) * v @ classes[target] - l2_reg * torch.linalg.vector_norm(x.flatten(1), dim=1)
                (g,) = torch.autograd.grad(score.sum(), x)
                with torch.no_grad():
                    norm = torch.linalg.vector_norm(g.flatten(1), dim=1).clamp_min(1e-12).reshape(-1, 1, 1, 1)
                    x = torch.where(done.reshape(-1, 1, 1, 1), x, x + step * g / norm)
                    x = torch.roll(x, shifts=(-oy, -ox), dims=(2, 3)).clamp(0, 1)
                    if blur_every and t % blur_every == 0:
                        x = torch.where(done.reshape(-1, 1, 1, 1), x, _gaussian_blur(x, blur_sigma))
                    v = F.normalize(image_embeddings(model, (x - mean_t) / std_t).float(), dim=-1)
                    p = torch.softmax(logit_scale_of(model).to(device) * v @ classes.T, dim=-1)
                    hit = (p.argmax(-1) == target) & (p[:, target] > prob) & ~done
                    for i in torch.nonzero(hit).flatten().tolist():
                        kept.append(((x[i] - mean_t[0]) / std_t[0]).detach().clone())
                        bar.update(1)
                    done |= hit
                if bool(done.all()):
                    break
            if len(kept) >= n:
                break
            prob = max(prob - sub_prob, min_prob)
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        bar.close()
    if len(kept) < n:
        raise InvalidInputError(f"could synthesise only {len(kept)} of {n} images that the model assigns to the forget "
                                f"class in {max_rounds} rounds of {steps} steps; the model may not know the class "
                                "(check its zero-shot accuracy) or needs more synthesis_steps")
    return torch.stack(kept[:n])


def _image_shape(model: torch.nn.Module, image_size: int | None) -> tuple[int, int, int]:
    inner = getattr(model, "model", model)
    vision = getattr(getattr(inner, "config", None), "vision_config", None)
    size = image_size if image_size is not None else getattr(vision, "image_size", None)
    if size is None:
        size = getattr(getattr(inner, "visual", None), "image_size", None)
        size = size[0] if isinstance(size, (tuple, list)) else size
    if not isinstance(size, int) or size <= 0:
        raise InvalidInputError("cannot read the model's input image size; pass image_size=")
    return int(getattr(vision, "num_channels", 3)), size, size


def _normalisation(model: torch.nn.Module, mean: Any, std: Any) -> tuple[Sequence[float], Sequence[float]]:
    proc = getattr(getattr(model, "processor", None), "image_processor", None)
    mean = mean if mean is not None else getattr(proc, "image_mean", None) or CLIP_MEAN
    std = std if std is not None else getattr(proc, "image_std", None) or CLIP_STD
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)


@register_strategy("zero_shot_class_unlearning")
class ZeroShotClassUnlearning(UnlearningStrategy):
    """Zero-shot class unlearning with synthetic samples (Kravets & Namboodiri, "Zero-Shot Class Unlearning in CLIP
    with Synthetic Samples", WACV 2025; official code github.com/akres001/Zero-Shot-Class-Unlearning-in-CLIP-with-
    Synthetic-Samples, ``train_forget.py`` with ``clip_forget_losses.py``, ``clip_forget_imagegen.py``,
    ``clip_forget_utils.py``, ``train_utils.py``).

    ``forget_data``: the prompts naming the class to forget (``["a photo of a dress."]``; several prompts are one
    class, ensembled); ``retain_data``: one prompt (or prompt list) per other class of the zero-shot label space.
    No image is needed:

    1. ``n_synthetic`` images of the class are synthesised from noise (:func:`synthesize_class_images`).
    2. Each epoch, per batch of them: ``L = sum_draws K / (2 n_samples)`` (:func:`lipschitz_loss`) with the class
       prompt's text embedding, Gaussian noise of std ``sigma`` on the (normalised) images; after ``backward`` only
       the ``k_v`` vision and ``k_t`` text parameter tensors with the largest mean ``|grad|`` keep their gradient
       (``get_important_params_mask``); Adam (lr 5e-5, betas (0.9, 0.98), eps 1e-6, weight decay 0.2) steps every
       ``accumulate`` batches; training stops once zero-shot accuracy on the synthetic images is
       ``<= stop_accuracy`` (0.2).
    3. An epoch that does not lower that accuracy is undone (model and optimizer) and the next rung of the
       schedule is taken: ``sigma`` in ``noise_stds`` (0.1 ... 2) and ``k = top_params + top_schedule`` (25 + 0 ...
       20, the ViT-B/16 values); the schedule ending or ``max_epochs`` (30) stops it; the best model is returned.

    Deviations: the towers ranked are the wrapper's vision / text groups with their projections (the code ranks
    ``model.visual`` and the text ``model.transformer`` blocks only); the text input is the first forget prompt
    (the code's ``"A picture of {}"``); ``steps`` (if given) caps the optimizer steps. Synthesis deviations: see
    :func:`synthesize_class_images`. Forget-set coreset weights do not apply (the forget set is synthetic).
    """

    data_parallel = False

    defaults = {
        "lr": 5e-5, "weight_decay": 0.2, "optimizer": "adam", "tokenizer": None,
        "n_synthetic": 64, "synthesis_steps": 3000, "synthesis_lr": 25.0, "l2_reg": 1e-3, "blur_every": 10,
        "max_jitter": 16, "high_prob": 0.8, "image_size": None, "image_mean": None, "image_std": None,
        "noise_stds": (0.1, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0), "top_params": 25, "top_schedule": (0, 2, 5, 8, 10, 15, 20),
        "n_samples": 10, "stop_accuracy": 0.2, "max_epochs": 30, "accumulate": 5, "synthetic": None,
    }
    retain = "required"
    gradient_based = True

    @staticmethod
    def _prompt_groups(data: Any, which: str, *, one_class: bool) -> list[list[str]]:
        items = list(data) if isinstance(data, Sequence) and not isinstance(data, str) else None
        if not items:
            raise ErasusTypeError(f"zero_shot_class_unlearning names classes by text: {which}_data must be a "
                                  f"non-empty list of prompt strings, got {type(data).__name__}")
        if one_class:
            if not all(isinstance(t, str) for t in items):
                raise ErasusTypeError("forget_data must be the prompt strings of the one class to forget")
            return [items]
        groups = [[t] if isinstance(t, str) else list(t) for t in items]
        if not all(g and all(isinstance(t, str) for t in g) for g in groups):
            raise ErasusTypeError("retain_data must hold one prompt string (or list of them) per retained class")
        return groups

    def _unlearn(self, model: torch.nn.Module, run: Run, *, tokenizer: Any, n_synthetic: int, synthesis_steps: int,
                 synthesis_lr: float, l2_reg: float, blur_every: int, max_jitter: int, high_prob: float,
                 image_size: int | None, image_mean: Any, image_std: Any, noise_stds: Sequence[float],
                 top_params: int, top_schedule: Sequence[int], n_samples: int, stop_accuracy: float,
                 max_epochs: int, accumulate: int, synthetic: torch.Tensor | None) -> torch.nn.Module:
        from ...tasks.contrastive import ContrastiveTask

        contrastive_task(run.task, self.registry_name)
        if run.optimizer_name != "adam":
            raise InvalidInputError("zero_shot_class_unlearning uses the official Adam; leave optimizer='adam'")
        for name, value in (("n_synthetic", n_synthetic), ("synthesis_steps", synthesis_steps),
                            ("n_samples", n_samples), ("max_epochs", max_epochs), ("accumulate", accumulate)):
            if not (isinstance(value, int) and value >= 1):
                raise InvalidInputError(f"{name} must be a positive integer, got {value!r}")
        if not noise_stds or len(noise_stds) != len(top_schedule) or any(s <= 0 for s in noise_stds):
            raise InvalidInputError("noise_stds (positive) and top_schedule must be non-empty and of equal length")
        if not 0 <= stop_accuracy < 1:
            raise InvalidInputError(f"stop_accuracy must be in [0, 1), got {stop_accuracy}")
        forget = self._prompt_groups(run.forget_raw, "forget", one_class=True)
        retain = self._prompt_groups(run.retain_raw, "retain", one_class=False)
        tok = tokenizer if tokenizer is not None else getattr(model, "tokenizer", None)
        if tok is None:
            raise InvalidInputError("zero_shot_class_unlearning tokenizes the prompts: pass tokenizer= (a CLIPTokenizer "
                                    "or CLIPProcessor) or use a CLIPWrapper with its processor")
        task = ContrastiveTask(class_prompts=forget + retain, tokenizer=tok)
        target = 0
        enc = task.tokenizer([forget[0][0]], padding=True, truncation=True, return_tensors="pt")
        prompt_ids, prompt_mask = enc["input_ids"].to(run.device), enc["attention_mask"].to(run.device)
        towers = tower_parameters(model)
        device = run.device

        model.eval()
        if synthetic is None:
            with torch.no_grad():
                classes = task.class_embeddings(model, device=device)
            mean, std = _normalisation(model, image_mean, image_std)
            synthetic = synthesize_class_images(
                model, classes, target, n=n_synthetic, shape=_image_shape(model, image_size), mean=mean, std=std,
                steps=synthesis_steps, lr=synthesis_lr, l2_reg=l2_reg, blur_every=blur_every, max_jitter=max_jitter,
                high_prob=high_prob, generator=run.generator, progress=run.progress)
        elif not (isinstance(synthetic, torch.Tensor) and synthetic.ndim == 4 and synthetic.is_floating_point()):
            raise InvalidInputError("synthetic= must be model-input images, a float (n, C, H, W) tensor")
        synthetic = synthetic.to(device)
        self.info_["synthetic_images"] = int(synthetic.shape[0])

        def accuracy() -> float:
            with torch.no_grad():
                pred = task.zero_shot_logits(model, synthetic).argmax(-1)
            return float((pred == target).float().mean())

        opt = torch.optim.Adam(run.trainable(model), lr=run.lr, betas=(0.9, 0.98), eps=1e-6,
                               weight_decay=run.weight_decay)
        batches = list(torch.split(synthetic, run.batch_size))
        acc_step = min(len(batches), accumulate)
        rung, best_acc = 0, 1.0
        best_state = None
        steps_done = 0
        start_acc = accuracy()
        self.info_["start_synthetic_accuracy"] = start_acc

        def masked_grads(k: int) -> None:
            """``get_important_params_mask``: per tower, the ``k`` tensors with the largest mean |grad| keep it."""
            for group in (towers["vision"], towers["text"]):
                ranked = sorted((p for p in group if p.grad is not None),
                                key=lambda p: float(p.grad.abs().sum()) / p.numel(), reverse=True)
                for p in ranked[k:]:
                    p.grad = None
            for p in towers["logit_scale"]:
                p.grad = None

        for epoch in range(max_epochs):
            last = (copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict()))
            sigma, k = float(noise_stds[rung]), int(top_params + top_schedule[rung])
            stop = False
            for i, x in enumerate(batches):
                model.train()
                t = text_embeddings(model, prompt_ids, prompt_mask).expand(x.shape[0], -1)
                v = image_embeddings(model, x)
                loss = torch.zeros((), device=device)
                for _ in range(n_samples):
                    noisy = x + sigma * torch.randn(x.shape, generator=run.generator).to(device)
                    with torch.no_grad():
                        v_noisy = image_embeddings(model, noisy)
                    loss = loss + lipschitz_loss(v, t, v_noisy, x, noisy)
                loss = loss / (2 * n_samples) / acc_step
                check_finite_loss(loss, strategy=self.registry_name, desc="Lipschitz", step=steps_done, lr=run.lr)
                loss.backward()
                masked_grads(k)
                run.history.append(float(loss.detach()) * acc_step)
                if (i + 1) % acc_step == 0 or i + 1 == len(batches):
                    opt.step()
                    opt.zero_grad(set_to_none=True)
                    steps_done += 1
                model.eval()
                if accuracy() <= stop_accuracy or run.steps is not None and steps_done >= run.steps:
                    stop = True
                    break
            acc = accuracy()
            if acc < best_acc:
                best_acc, best_state = acc, copy.deepcopy(model.state_dict())
            else:
                model.load_state_dict(last[0])
                opt.load_state_dict(last[1])
                rung += 1
                if rung == len(noise_stds):
                    break
            if stop or acc <= stop_accuracy:
                break
        if best_state is not None:
            model.load_state_dict(best_state)
        self.info_.update(synthetic_accuracy=accuracy(), epochs=epoch + 1, optimizer_steps=steps_done,
                          noise_std=float(noise_stds[min(rung, len(noise_stds) - 1)]))
        return model
