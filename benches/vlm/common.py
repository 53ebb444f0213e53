"""Fashion-MNIST image-caption pairs and the two dual encoders of the measured vision-language run.

* :class:`MiniLMDualEncoder`: a small CNN image tower + the frozen all-MiniLM-L6-v2 sentence encoder
  (``erasus.models.load_minilm``) with a trainable 2-layer projection on top. Captions are templated, so
  the tower memoizes MiniLM's embedding of each distinct token sequence (a few hundred texts in all) and
  only the projection runs per step; any new caption is encoded by MiniLM the first time it is seen.
* an HF ``CLIPModel`` from a small ``CLIPConfig`` (ViT 7x7 patches on 28x28 grey images, a 2-layer text
  transformer) over a word-level vocabulary of the caption words (:class:`WordTokenizer`).

Both expose ``get_image_features`` / ``get_text_features`` / ``logit_scale`` and are trained with the
symmetric InfoNCE loss of CLIP (Radford et al., 2021). ``train_dual_encoder`` is the one recipe used for
the start models and for the oracles (the same recipe without the forget class).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from erasus.experiments.datasets import load_fashion_mnist

CLASSES = ("t-shirt", "pair of trousers", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
           "ankle boot")
TEMPLATES = ("a photo of a {}.", "a {}, product photo.", "a picture of a {}.", "a grey photo of a {}.",
             "a small image of a {}.", "a {} on a plain background.", "a low resolution photo of a {}.",
             "a catalogue photo of a {}.")
#: the forgotten class per family: "dress" for MiniLM; the small CLIP's start model does not know dresses
#: (5% zero-shot top-1, its dress images go to "coat"), so it forgets "sandal" (95%) instead
FORGET_CLASS = {"minilm": 3, "clip": 5}
#: the zero-shot prompt of each class (CLIP's default "a photo of a {}." template)
ZERO_SHOT_TEMPLATE = TEMPLATES[0]
CACHE = Path(__file__).resolve().parent / ".cache"


def class_prompts(classes: Sequence[str] = CLASSES) -> list[str]:
    return [ZERO_SHOT_TEMPLATE.format(c) for c in classes]


def caption_ids(labels: torch.Tensor, *, seed: int) -> torch.Tensor:
    """A fixed template index per sample (seeded), so a pair set is the same in every run."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, len(TEMPLATES), (len(labels),), generator=g)


def captions_of(labels: torch.Tensor, templates: torch.Tensor) -> list[str]:
    return [TEMPLATES[int(t)].format(CLASSES[int(y)]) for y, t in zip(labels, templates)]


def load_data(*, n_train: int, n_test: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Fashion-MNIST subsets normalised to mean 0 / std 1 (statistics of the full subset)."""
    xtr, ytr, xte, yte = load_fashion_mnist(limit_train=n_train, limit_test=n_test, seed=seed)
    mean, std = xtr.mean(), xtr.std()
    return {"x_train": (xtr - mean) / std, "y_train": ytr, "x_test": (xte - mean) / std, "y_test": yte}


# --------------------------------------------------------------------------------------------- tokenizers
class WordTokenizer:
    """Word-level tokenizer over a fixed vocabulary: ``<bos> words <eos>`` then ``<pad>`` up to ``max_length``
    (fixed, so per-sample pairs stack); unknown words map to ``<unk>``. ``CLIPTextModel`` pools at its
    ``eos_token_id``."""

    specials = ("<pad>", "<bos>", "<eos>", "<unk>")

    def __init__(self, texts: Sequence[str], *, max_length: int = 16) -> None:
        words = sorted({w for t in texts for w in self.split(t)})
        self.vocab = {w: i for i, w in enumerate(list(self.specials) + words)}
        self.pad_token_id, self.bos_token_id, self.eos_token_id, self.unk_token_id = 0, 1, 2, 3
        self.max_length = max_length

    @staticmethod
    def split(text: str) -> list[str]:
        return re.findall(r"[a-z\-]+|[.,]", text.lower())

    def __len__(self) -> int:
        return len(self.vocab)

    def __call__(self, texts: Sequence[str], **_: Any) -> dict[str, torch.Tensor]:
        rows = [[self.bos_token_id] + [self.vocab.get(w, self.unk_token_id) for w in self.split(t)][: self.max_length - 2]
                + [self.eos_token_id] for t in texts]
        n = self.max_length
        ids = torch.full((len(rows), n), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), n), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
            mask[i, : len(r)] = 1
        return {"input_ids": ids, "attention_mask": mask}


class MiniLMTokenizer:
    """MiniLM's own WordPiece tokenizer, padded to a fixed length (so per-sample pairs stack)."""

    def __init__(self, tokenizer: Any, *, max_length: int = 16) -> None:
        self.tokenizer, self.max_length = tokenizer, max_length

    def __call__(self, texts: Sequence[str], **_: Any) -> dict[str, torch.Tensor]:
        enc = self.tokenizer(list(texts), padding="max_length", truncation=True, max_length=self.max_length,
                             return_tensors="pt")
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}


# --------------------------------------------------------------------------------------------- models
class ImageCNN(nn.Module):
    """28x28 grey image -> ``dim``: two conv blocks and a 2-layer head (about 120k parameters)."""

    def __init__(self, dim: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(64 * 7 * 7, 32), nn.ReLU(), nn.Linear(32, dim))

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.net(pixel_values)


class MiniLMTextTower(nn.Module):
    """Frozen MiniLM sentence embeddings (mean-pooled, normalised) -> trainable MLP -> ``dim``.

    MiniLM is run without gradients and its output memoized per distinct token sequence; the memo is a
    plain dict (not state), rebuilt on demand in a copy."""

    def __init__(self, encoder: Any, dim: int = 64, hidden: int = 256) -> None:
        super().__init__()
        self.encoder = encoder.model.requires_grad_(False)
        self.proj = nn.Sequential(nn.Linear(encoder.dim, hidden), nn.ReLU(), nn.Linear(hidden, dim))
        self._memo: dict[tuple[int, ...], torch.Tensor] = {}

    @torch.no_grad()
    def sentence_embeddings(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        keys = [tuple(row[m.bool()].tolist()) for row, m in zip(input_ids.cpu(), attention_mask.cpu())]
        missing = sorted({k for k in keys if k not in self._memo})
        if missing:
            n = max(len(k) for k in missing)
            ids = torch.zeros((len(missing), n), dtype=torch.long)
            mask = torch.zeros((len(missing), n), dtype=torch.long)
            for i, k in enumerate(missing):
                ids[i, : len(k)] = torch.tensor(k)
                mask[i, : len(k)] = 1
            dev = next(self.encoder.parameters()).device
            hidden = self.encoder(input_ids=ids.to(dev), attention_mask=mask.to(dev)).last_hidden_state.float()
            m = mask.to(dev).unsqueeze(-1).float()
            emb = F.normalize((hidden * m).sum(1) / m.sum(1).clamp(min=1e-9), dim=-1).cpu()
            self._memo.update(zip(missing, emb))
        return torch.stack([self._memo[k] for k in keys]).to(input_ids.device)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        return self.proj(self.sentence_embeddings(input_ids, attention_mask))


class MiniLMDualEncoder(nn.Module):
    """CLIP-style dual encoder: ``ImageCNN`` vision tower, frozen MiniLM + MLP text tower, learnable
    temperature (``logit_scale``, initialised to log(1/0.07) as in CLIP). Embeddings are not normalised
    here; the contrastive loss normalises them, as ``CLIPModel`` does."""

    def __init__(self, encoder: Any, dim: int = 64) -> None:
        super().__init__()
        self.vision_model = ImageCNN(dim)
        self.text_model = MiniLMTextTower(encoder, dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def parameter_groups(self, *, split_projection: bool = False) -> dict[str, list[nn.Parameter]]:
        """The groups of ``erasus.models.clip.clip_parameter_groups``: each tower's last linear layer is its
        projection into the joint space; the frozen MiniLM weights sit in ``text`` (they get no gradient)."""
        v_proj, t_proj = self.vision_model.net[-1], self.text_model.proj[-1]
        proj_ids = {id(p) for m in (v_proj, t_proj) for p in m.parameters()}
        groups = {"vision": [p for p in self.vision_model.parameters() if id(p) not in proj_ids],
                  "text": [p for p in self.text_model.parameters() if id(p) not in proj_ids]}
        if split_projection:
            groups.update(vision_projection=list(v_proj.parameters()), text_projection=list(t_proj.parameters()))
        else:
            groups["projection"] = [*v_proj.parameters(), *t_proj.parameters()]
        groups["logit_scale"] = [self.logit_scale]
        return groups

    def get_image_features(self, pixel_values: torch.Tensor, **_: Any) -> torch.Tensor:
        return self.vision_model(pixel_values)

    def get_text_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                          **_: Any) -> torch.Tensor:
        return self.text_model(input_ids, attention_mask)

    def forward(self, pixel_values: torch.Tensor, input_ids: torch.Tensor,
                attention_mask: torch.Tensor | None = None, **_: Any) -> torch.Tensor:
        """The (B, B) image->text logits ``exp(s) * cos(v_i, t_j)`` (CLIP's ``logits_per_image``)."""
        v = F.normalize(self.get_image_features(pixel_values), dim=-1)
        t = F.normalize(self.get_text_features(input_ids, attention_mask), dim=-1)
        return self.logit_scale.exp() * v @ t.T


def small_clip(vocab_size: int) -> nn.Module:
    """An HF ``CLIPModel`` sized for 28x28 grey images: ViT (patch 7, 16 patches, width 64, 2 layers) and a
    2-layer width-64 text transformer, 64-d joint space."""
    from transformers import CLIPConfig, CLIPModel, CLIPTextConfig, CLIPVisionConfig

    text = CLIPTextConfig(vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                          num_attention_heads=2, max_position_embeddings=16, projection_dim=64,
                          pad_token_id=0, bos_token_id=1, eos_token_id=2)
    vision = CLIPVisionConfig(image_size=28, patch_size=7, num_channels=1, hidden_size=64, intermediate_size=128,
                              num_hidden_layers=2, num_attention_heads=2, projection_dim=64)
    config = CLIPConfig(text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=64)
    return CLIPModel(config)


def image_text_embeddings(model: nn.Module, pixel_values: torch.Tensor, text: dict[str, torch.Tensor]
                          ) -> tuple[torch.Tensor, torch.Tensor]:
    """Projected (unnormalised) image and text embeddings of either model (transformers 5 returns a
    ``BaseModelOutputWithPooling`` from ``CLIPModel.get_*_features``; the embedding is its ``pooler_output``)."""
    v = model.get_image_features(pixel_values=pixel_values)
    t = model.get_text_features(input_ids=text["input_ids"], attention_mask=text["attention_mask"])
    v = getattr(v, "pooler_output", v)
    t = getattr(t, "pooler_output", t)
    return v, t


def info_nce(v: torch.Tensor, t: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """CLIP's symmetric InfoNCE: ``(CE(s V T^T, I) + CE(s T V^T, I)) / 2`` on L2-normalised embeddings."""
    logits = logit_scale.exp() * F.normalize(v, dim=-1) @ F.normalize(t, dim=-1).T
    target = torch.arange(len(v), device=v.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


# --------------------------------------------------------------------------------------------- training
def train_dual_encoder(model: nn.Module, tokenizer: Any, x: torch.Tensor, y: torch.Tensor, *, epochs: int,
                       lr: float, batch_size: int = 128, seed: int = 0, log: Any = print) -> dict[str, Any]:
    """Contrastive training on (image, caption) pairs; each epoch draws a fresh template per image (the
    captions are the only supervision: class ids are never shown to the model). AdamW, cosine schedule."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    steps = epochs * math.ceil(len(x) / batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    texts = {(c, t): tokenizer([TEMPLATES[t].format(CLASSES[c])]) for c in range(len(CLASSES))
             for t in range(len(TEMPLATES))}
    t0 = time.perf_counter()
    model.train()
    losses = []
    for epoch in range(epochs):
        order = torch.randperm(len(x), generator=g)
        tmpl = torch.randint(0, len(TEMPLATES), (len(x),), generator=g)
        total = 0.0
        for i in range(0, len(x), batch_size):
            idx = order[i:i + batch_size]
            enc = [texts[(int(y[j]), int(tmpl[j]))] for j in idx]
            text = {k: torch.cat([e[k] for e in enc]) for k in ("input_ids", "attention_mask")}
            v, t = image_text_embeddings(model, x[idx], text)
            loss = info_nce(v, t, model.logit_scale)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, math.log(100))  # CLIP clips the temperature at 100
            total += float(loss.detach()) * len(idx)
        losses.append(total / len(x))
        log(f"    epoch {epoch + 1}/{epochs}: contrastive loss {losses[-1]:.4f}")
    model.eval()
    return {"losses": losses, "seconds": time.perf_counter() - t0}


# --------------------------------------------------------------------------------------------- evaluation
@torch.no_grad()
def zero_shot_predictions(model: nn.Module, tokenizer: Any, x: torch.Tensor, *, k: int = 5,
                          batch_size: int = 500) -> torch.Tensor:
    """Top-k class indices per image against the prompts ``"a photo of a {class}."`` (cosine similarity)."""
    model.eval()
    prompts = tokenizer(class_prompts())
    t = model.get_text_features(**prompts)
    t = F.normalize(getattr(t, "pooler_output", t), dim=-1)
    out = []
    for i in range(0, len(x), batch_size):
        v = model.get_image_features(pixel_values=x[i:i + batch_size])
        v = F.normalize(getattr(v, "pooler_output", v), dim=-1)
        out.append((v @ t.T).topk(k, dim=-1).indices)
    return torch.cat(out)


def zero_shot_accuracy(model: nn.Module, tokenizer: Any, x: torch.Tensor, y: torch.Tensor, *, forget_class: int
                       ) -> dict[str, float]:
    """Top-1 / top-5 zero-shot accuracy on the forget-class images and on the other (retain) classes."""
    top = zero_shot_predictions(model, tokenizer, x)
    hit1 = (top[:, 0] == y).float()
    hit5 = (top == y[:, None]).any(-1).float()
    f = y == forget_class
    return {"forget_top1": float(hit1[f].mean()), "retain_top1": float(hit1[~f].mean()),
            "forget_top5": float(hit5[f].mean()), "retain_top5": float(hit5[~f].mean())}


def fingerprint(**parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


def seeded(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
