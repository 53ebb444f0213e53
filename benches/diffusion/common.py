"""The measured diffusion run's pieces: a tiny text-conditioned pixel-space Stable Diffusion pipeline on
16x16 Fashion-MNIST, its character-level CLIP tokenizer, the captioned data and the Fashion-MNIST classifier
that judges samples (and whose penultimate features feed FID / KID).

The pipeline is a plain diffusers ``StableDiffusionPipeline`` with ``vae=None``: the UNet works on pixels
(1 x 16 x 16 in [-1, 1]) and ``output_type="latent"`` returns them undecoded, so the saved folder loads
with ``StableDiffusionPipeline.from_pretrained`` (and erasus' wrapper) like any SD checkpoint.
"""

from __future__ import annotations

import json
import os
import string
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

HERE = Path(__file__).resolve().parent
#: the run's Fashion-MNIST classes and the one to erase; SDBENCH_CLASSES="5,6,9" SDBENCH_FORGET=6 re-runs the whole
#: protocol on another concept (its own cache folder, so the default run's models stay)
CLASSES = tuple(int(c) for c in os.environ.get("SDBENCH_CLASSES", "1,3,7,8").split(","))
FORGET = int(os.environ.get("SDBENCH_FORGET", "3"))
CACHE = HERE / (".cache" if (CLASSES, FORGET) == ((1, 3, 7, 8), 3) else
                f".cache-{'-'.join(map(str, CLASSES))}-forget{FORGET}")

FMNIST_NAMES = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
                "ankle boot")
TEMPLATES = ("a photo of a {}", "a {}", "an image of a {}", "a picture of a {}")
RES = 16
MAX_LEN = 32


def caption(name: str, template: int = 0) -> str:
    return TEMPLATES[template].format(name)


def build_tokenizer(folder: Path):
    """A character-level ``CLIPTokenizer``: every printable character and its word-final ``</w>`` form,
    no merges, so any English prompt tokenizes offline."""
    from transformers import CLIPTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    chars = sorted(set(string.ascii_lowercase + string.digits + string.punctuation))
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in chars:
        vocab.setdefault(c, len(vocab))
        vocab.setdefault(c + "</w>", len(vocab))
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tok = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=MAX_LEN)
    return tok


def build_pipeline(*, seed: int = 0):
    """UNet2DConditionModel (0.99M parameters; text enters by cross-attention at 4x4: down, mid and up blocks)
    and a 2-layer CLIP text tower (78k parameters)."""
    from diffusers import DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    tok = build_tokenizer(CACHE / "tokenizer_src")
    text = CLIPTextModel(CLIPTextConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128,
                                        num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=MAX_LEN,
                                        bos_token_id=0, eos_token_id=1, pad_token_id=1))
    unet = UNet2DConditionModel(
        sample_size=RES, in_channels=1, out_channels=1, layers_per_block=1,
        block_out_channels=(16, 32, 64),
        down_block_types=("DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
        cross_attention_dim=64, attention_head_dim=8, norm_num_groups=8,
    )
    sched = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type="epsilon",
                          clip_sample=True)
    return StableDiffusionPipeline(vae=None, text_encoder=text, tokenizer=tok, unet=unet, scheduler=sched,
                                   safety_checker=None, feature_extractor=None, image_encoder=None,
                                   requires_safety_checker=False)


def build_clip(*, seed: int = 0):
    """A tiny ``CLIPModel`` for 1 x 16 x 16 images (ViT patches of 4) and the run's character-level tokenizer."""
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(seed)
    tok = build_tokenizer(CACHE / "tokenizer_src")
    cfg = CLIPConfig(text_config={"vocab_size": len(tok), "hidden_size": 64, "intermediate_size": 128,
                                  "num_hidden_layers": 2, "num_attention_heads": 4, "max_position_embeddings": MAX_LEN,
                                  "bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 1},
                     vision_config={"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                                    "num_attention_heads": 4, "image_size": RES, "patch_size": 4, "num_channels": 1},
                     projection_dim=32)
    return CLIPModel(cfg)


class ClipProcessor:
    """The processor :class:`erasus.metrics.generation.CLIPScoreMetric` takes for the run's CLIP: images in [0, 1]
    (``(H, W, 1)`` arrays or ``(1, H, W)`` tensors) scaled to [-1, 1], captions through the character tokenizer."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer

    def __call__(self, *, text, images, return_tensors: str = "pt", **_) -> dict:
        ims = [torch.as_tensor(np.asarray(im), dtype=torch.float32) for im in images]
        ims = [im.permute(2, 0, 1) if im.ndim == 3 and im.shape[-1] == 1 else im for im in ims]
        tok = self.tokenizer(list(text), padding="max_length", max_length=MAX_LEN, truncation=True,
                             return_tensors="pt")
        return {"pixel_values": torch.stack(ims) * 2 - 1, "input_ids": tok.input_ids,
                "attention_mask": tok.attention_mask}


def clip_processor() -> ClipProcessor:
    return ClipProcessor(build_tokenizer(CACHE / "tokenizer_src"))


def load_pipeline(folder: Path):
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline.from_pretrained(str(folder), vae=None, safety_checker=None, feature_extractor=None,
                                                   image_encoder=None, requires_safety_checker=False)


def encode(pipe, prompts: list[str]) -> torch.Tensor:
    """Prompt embeddings exactly as ``StableDiffusionPipeline.encode_prompt`` makes them (max-length padding,
    no attention mask), so training and sampling condition on the same tensors."""
    ids = pipe.tokenizer(prompts, padding="max_length", max_length=pipe.tokenizer.model_max_length,
                         truncation=True, return_tensors="pt").input_ids
    return pipe.text_encoder(ids.to(pipe.text_encoder.device))[0]


def fmnist(classes: tuple[int, ...], *, split: str = "train", limit_per_class: int | None = None, seed: int = 0):
    """16x16 Fashion-MNIST of the given classes: images in [0, 1] (N, 1, 16, 16) and labels re-indexed 0..C-1."""
    from erasus.experiments.datasets import load_fashion_mnist

    xtr, ytr, xte, yte = load_fashion_mnist(seed=seed)
    x, y = (xtr, ytr) if split == "train" else (xte, yte)
    keep = torch.isin(y, torch.tensor(classes))
    x, y = x[keep], y[keep]
    if limit_per_class is not None:
        rng = np.random.default_rng(seed)
        idx = np.concatenate([rng.permutation(np.flatnonzero(y.numpy() == c))[:limit_per_class] for c in classes])
        idx.sort()
        x, y = x[idx], y[idx]
    x = F.interpolate(x, size=(RES, RES), mode="area")
    remap = {c: i for i, c in enumerate(classes)}
    return x.contiguous(), torch.tensor([remap[int(v)] for v in y])


class Classifier(nn.Module):
    """A small CNN on 16x16 Fashion-MNIST; ``features`` (128-d, before the last layer) feed FID / KID."""

    def __init__(self, n_classes: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(64 * 4 * 4, 128), nn.ReLU(),
        )
        self.head = nn.Linear(128, n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """Pipeline output (pixels in [-1, 1]) -> classifier input in [0, 1]."""
    return ((x.clamp(-1, 1) + 1) / 2).float()


@torch.no_grad()
def sample(pipe, prompts: list[str], *, seed: int, steps: int = 30, guidance: float = 3.0,
           batch: int = 100) -> torch.Tensor:
    """Images in [0, 1] for ``prompts`` (one per prompt), DDIM with classifier-free guidance, fixed seed."""
    from diffusers import DDIMScheduler

    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(0, len(prompts), batch):
        lat = pipe(prompts[i:i + batch], num_inference_steps=steps, guidance_scale=guidance, generator=g,
                   output_type="latent", height=RES * pipe.vae_scale_factor,
                   width=RES * pipe.vae_scale_factor).images
        out.append(to_unit(lat))
    return torch.cat(out)


def save_grid(images: torch.Tensor, path: Path, *, nrow: int) -> None:
    """A PNG grid (rows = prompts / classes), upscaled x2 so the 16x16 samples are visible."""
    from PIL import Image

    n = images.shape[0]
    ncol = nrow
    rows = (n + ncol - 1) // ncol
    canvas = np.ones((rows * (RES + 2), ncol * (RES + 2)), dtype=np.float32)
    for k in range(n):
        r, c = divmod(k, ncol)
        canvas[r * (RES + 2) + 1: r * (RES + 2) + 1 + RES, c * (RES + 2) + 1: c * (RES + 2) + 1 + RES] = \
            images[k, 0].cpu().numpy()
    img = Image.fromarray((canvas * 255).astype(np.uint8)).resize((canvas.shape[1] * 2, canvas.shape[0] * 2),
                                                                  Image.NEAREST)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, optimize=True)
