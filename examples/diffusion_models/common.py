"""Shared material of the diffusion examples: the model (a tiny text-to-image pipeline built offline with
``--tiny``, else a Stable Diffusion 1.x / 2.x hub id or folder) and the measurement of how strongly a prompt still
steers the UNet.

Not an example itself; the scripts beside it import it (Python puts a script's folder on ``sys.path``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from erasus.models import StableDiffusionWrapper


def parse_args(description: str) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--tiny", action="store_true", help="a tiny randomly initialised pipeline built offline (CPU)")
    p.add_argument("--model", default="CompVis/stable-diffusion-v1-4", help="hub id or local diffusers folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None)
    p.add_argument("--out", default=None, help="folder for before / after images of every prompt (PNG)")
    return p.parse_args()


def load(args: argparse.Namespace) -> StableDiffusionWrapper:
    if args.tiny:
        from erasus.models import tiny_pipeline

        return StableDiffusionWrapper(tiny_pipeline(seed=args.seed), device=args.device)
    if Path(args.model).exists():
        return StableDiffusionWrapper(args.model, device=args.device)
    import diffusers

    pipe = diffusers.StableDiffusionPipeline.from_pretrained(args.model, safety_checker=None)
    return StableDiffusionWrapper(pipe, device=args.device)


@torch.no_grad()
def concept_directions(model: StableDiffusionWrapper, prompts: list[str], *, probes: int, seed: int) -> torch.Tensor:
    """``eps(x_t, c) - eps(x_t, "")`` for each prompt on ``probes`` fixed (noise, timestep) pairs, flattened:
    the direction in which the prompt steers the denoiser (classifier-free guidance follows it)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((probes, *model.latent_shape), generator=g).to(model.device, model.dtype)
    t = torch.randint(0, model.num_train_timesteps, (probes,), generator=g).to(model.device)
    empty = model.noise_prediction(x, t, model.encode_prompt([""] * probes))
    out = []
    for prompt in prompts:
        cond = model.noise_prediction(x, t, model.encode_prompt([prompt] * probes))
        out.append((cond - empty).flatten().double().cpu())
    return torch.stack(out)


def direction_cosines(before: torch.Tensor, after: torch.Tensor) -> list[float]:
    """Cosine of each prompt's steering direction after unlearning with the original one: 1 = unchanged,
    <= 0 = the prompt no longer pushes the model where it used to (ESD trains it to point away)."""
    return torch.nn.functional.cosine_similarity(before, after, dim=1).tolist()


def save_images(model: StableDiffusionWrapper, prompts: list[str], folder: str, tag: str, *, seed: int,
                steps: int) -> None:
    from PIL import Image

    Path(folder).mkdir(parents=True, exist_ok=True)
    images = model.generate(prompts, num_inference_steps=steps, seed=seed)
    for i, img in enumerate(images):
        array = (img.permute(1, 2, 0).clamp(0, 1) * 255).byte().numpy()
        Image.fromarray(array).save(Path(folder) / f"{tag}_{i}.png")


def report(title: str, rows: list[tuple[str, str, float]]) -> None:
    print(f"\n{title}")
    print(f"{'prompt':48s}{'set':>8s}{'cosine to original direction':>31s}")
    for prompt, kind, cos in rows:
        print(f"{prompt[:47]:48s}{kind:>8s}{cos:31.3f}")
