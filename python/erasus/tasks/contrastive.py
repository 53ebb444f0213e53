"""Contrastive (CLIP-style) adapter: image-text pairs, (B, B) similarity logits, symmetric InfoNCE.

A batch is a dict ``{"pixel_values": (B, 3, H, W), "input_ids": (B, T), "attention_mask": (B, T)}`` (what
``CLIPProcessor`` returns, collated from per-sample dicts), optionally with ``"labels"`` (class ids for
zero-shot evaluation), or a tuple ``(images, token_ids)`` / ``(images, token_ids, attention_mask)``.

With L2-normalised embeddings ``v_i`` (image) and ``t_j`` (text) and the model's temperature
``s = exp(logit_scale)`` the logits are ``S_ij = s * v_i . t_j`` and the per-sample loss of pair ``i`` is the
symmetric InfoNCE of CLIP (Radford et al., ICML 2021, "Learning Transferable Visual Models From Natural
Language Supervision", the pseudo-code of its Figure 3; ``open_clip/src/open_clip/loss.py`` ``ClipLoss``)::

    loss_i = ( CE(S[i, :], i) + CE(S[:, i], i) ) / 2

so ``mean_i loss_i`` is exactly CLIP's training loss. A pair's loss depends on the other pairs of its
batch; :meth:`ContrastiveTask.separable` gives the per-sample view that per-sample gradients need (each
pair against a fixed bank of negatives, as TRAK does for CLIP).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from ..errors import ErasusTypeError, InvalidInputError
from .base import Batch, Task, register_task

__all__ = ["ContrastiveTask", "concat_pair_batches", "embedding_of", "image_embeddings", "text_embeddings", "logit_scale_of",
           "symmetric_info_nce", "split_pair_batch"]

#: CLIP clamps its learned temperature so that logits are at most 100x the cosine similarity
MAX_LOGIT_SCALE = 100.0
_IMAGE_KEYS = ("pixel_values", "images", "image")
_TEXT_KEYS = ("input_ids", "token_ids", "text")
_LABEL_KEYS = ("labels", "label")


def embedding_of(out: Any, *, kind: str) -> torch.Tensor:
    """The projected embedding from ``get_image_features``/``get_text_features`` output.

    transformers < 5 returns the tensor; transformers 5 returns a ``BaseModelOutputWithPooling`` whose
    ``pooler_output`` is the projected embedding (``image_embeds``/``text_embeds`` on some towers).
    """
    if isinstance(out, torch.Tensor):
        return out
    for key in (f"{kind}_embeds", "pooler_output"):
        value = out.get(key) if isinstance(out, Mapping) else getattr(out, key, None)
        if isinstance(value, torch.Tensor):
            return value
    raise ErasusTypeError(f"get_{kind}_features returned {type(out).__name__}; expected a tensor or an output "
                          f"with pooler_output / {kind}_embeds")


def split_pair_batch(batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """``(pixel_values, input_ids, attention_mask or None)`` of a contrastive batch (dict or tuple)."""
    if isinstance(batch, Mapping):
        images = next((batch[k] for k in _IMAGE_KEYS if k in batch), None)
        ids = next((batch[k] for k in _TEXT_KEYS if k in batch), None)
        if images is None or ids is None:
            raise InvalidInputError(f"a contrastive batch dict needs pixel_values and input_ids, got keys {sorted(batch)}")
        mask = batch.get("attention_mask")
    elif isinstance(batch, Sequence) and not isinstance(batch, str) and len(batch) in (2, 3):
        images, ids = batch[0], batch[1]
        mask = batch[2] if len(batch) == 3 else None
    else:
        raise ErasusTypeError("a contrastive batch is a dict with pixel_values/input_ids/attention_mask or a tuple "
                              f"(images, token_ids[, attention_mask]), got {type(batch).__name__}")
    if not isinstance(images, torch.Tensor) or not isinstance(ids, torch.Tensor):
        raise ErasusTypeError(f"pixel_values and input_ids must be tensors, got {type(images).__name__} and "
                              f"{type(ids).__name__} (tokenize captions with the model's processor first)")
    if images.ndim != 4:
        raise InvalidInputError(f"pixel_values must be (B, C, H, W), got shape {tuple(images.shape)}")
    if ids.ndim != 2 or ids.dtype.is_floating_point:
        raise InvalidInputError(f"input_ids must be integer (B, T), got shape {tuple(ids.shape)} dtype {ids.dtype}")
    if images.shape[0] != ids.shape[0]:
        raise InvalidInputError(f"{images.shape[0]} images but {ids.shape[0]} texts in one batch; pairs must match")
    if mask is not None and tuple(mask.shape) != tuple(ids.shape):
        raise InvalidInputError(f"attention_mask {tuple(mask.shape)} does not match input_ids {tuple(ids.shape)}")
    return images, ids, mask


def image_embeddings(model: torch.nn.Module, pixel_values: torch.Tensor) -> torch.Tensor:
    """Projected (not normalised) image embeddings (B, D) of any model with ``get_image_features``."""
    return embedding_of(model.get_image_features(pixel_values=pixel_values), kind="image")


def text_embeddings(model: torch.nn.Module, input_ids: torch.Tensor,
                    attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Projected (not normalised) text embeddings (B, D) of any model with ``get_text_features``."""
    kwargs = {"input_ids": input_ids}
    if attention_mask is not None:
        kwargs["attention_mask"] = attention_mask
    return embedding_of(model.get_text_features(**kwargs), kind="text")


def logit_scale_of(model: torch.nn.Module, temperature: float | None = None) -> torch.Tensor:
    """``s = 1 / temperature`` if given, else ``exp(model.logit_scale)`` clamped at 100 as in CLIP."""
    if temperature is not None:
        return torch.tensor(1.0 / temperature)
    scale = getattr(model, "logit_scale", None)
    if isinstance(scale, torch.Tensor):
        return scale.exp().clamp(max=MAX_LOGIT_SCALE).reshape(())
    raise InvalidInputError(f"{type(model).__name__} has no logit_scale; pass ContrastiveTask(temperature=...)")


def symmetric_info_nce(logits: torch.Tensor) -> torch.Tensor:
    """Per-pair symmetric InfoNCE ``(CE(S[i,:], i) + CE(S[:,i], i)) / 2`` of square logits (B, B), shape (B,)."""
    if logits.ndim != 2 or logits.shape[0] != logits.shape[1]:
        raise InvalidInputError(f"symmetric InfoNCE needs square (B, B) logits, got {tuple(logits.shape)}")
    target = torch.arange(logits.shape[0], device=logits.device)
    logits = logits.float()
    return 0.5 * (F.cross_entropy(logits, target, reduction="none") + F.cross_entropy(logits.T, target, reduction="none"))


def concat_pair_batches(*batches: Batch) -> dict[str, torch.Tensor]:
    """One dict batch holding the pairs of every batch in order (texts right-padded to the longest, mask 0)."""
    parts = [split_pair_batch(b) for b in batches]
    length = max(ids.shape[1] for _, ids, _ in parts)
    images, ids_out, masks = [], [], []
    for im, ids, mask in parts:
        mask = torch.ones_like(ids) if mask is None else mask
        pad = length - ids.shape[1]
        images.append(im)
        ids_out.append(F.pad(ids, (0, pad)))
        masks.append(F.pad(mask, (0, pad)))
    return {"pixel_values": torch.cat(images), "input_ids": torch.cat(ids_out), "attention_mask": torch.cat(masks)}


def _images_of(batch: Batch) -> torch.Tensor:
    if isinstance(batch, torch.Tensor):
        return batch
    if isinstance(batch, Mapping) and not any(k in batch for k in _TEXT_KEYS):
        images = next((batch[k] for k in _IMAGE_KEYS if k in batch), None)
        if not isinstance(images, torch.Tensor):
            raise InvalidInputError(f"an image batch dict needs pixel_values, got keys {sorted(batch)}")
        return images
    return split_pair_batch(batch)[0]


def _tokenize(tokenizer: Any, texts: Sequence[str]) -> dict[str, torch.Tensor]:
    enc = tokenizer(list(texts), padding=True, truncation=True, return_tensors="pt")
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}


@register_task("contrastive")
class ContrastiveTask(Task):
    """CLIP-style dual encoders: ``loss_i = (CE(S[i,:], i) + CE(S[:,i], i)) / 2`` with ``S = s * v t^T``.

    Args:
        temperature: fixed softmax temperature (``s = 1 / temperature``); default: the model's ``logit_scale``.
        class_prompts: zero-shot classes, one entry per class: a prompt string, a list of prompt strings (CLIP's
            prompt ensembling: the class embedding is the normalised mean of the normalised prompt embeddings),
            or an already tokenized dict ``{"input_ids": (C, T), "attention_mask": (C, T)}``.
        tokenizer: tokenizes string prompts (a ``CLIPTokenizer`` or a ``CLIPProcessor``).
        embedding: the selection embedding :meth:`embeddings` gives: ``"joint"`` (image and text side by side),
            ``"image"`` or ``"text"``.
    """

    name = "contrastive"

    def __init__(self, *, temperature: float | None = None, class_prompts: Any = None, tokenizer: Any = None,
                 embedding: str = "joint") -> None:
        if temperature is not None and not (isinstance(temperature, (int, float)) and temperature > 0):
            raise InvalidInputError(f"temperature must be a positive number, got {temperature!r}")
        if embedding not in ("joint", "image", "text"):
            raise InvalidInputError(f"embedding must be 'joint', 'image' or 'text', got {embedding!r}")
        self.embedding = embedding
        self.temperature = None if temperature is None else float(temperature)
        self.tokenizer = getattr(tokenizer, "tokenizer", tokenizer)  # a processor carries its tokenizer
        self.class_prompts = class_prompts
        self._prompt_groups = self._check_prompts(class_prompts)

    def _check_prompts(self, prompts: Any) -> list[dict[str, torch.Tensor]] | None:
        if prompts is None:
            return None
        if isinstance(prompts, Mapping):
            if "input_ids" not in prompts:
                raise InvalidInputError(f"tokenized class_prompts need input_ids, got keys {sorted(prompts)}")
            ids = torch.as_tensor(prompts["input_ids"])
            mask = torch.as_tensor(prompts.get("attention_mask", torch.ones_like(ids)))
            return [{"input_ids": ids[c:c + 1], "attention_mask": mask[c:c + 1]} for c in range(ids.shape[0])]
        if isinstance(prompts, str) or not isinstance(prompts, Sequence) or len(prompts) < 2:
            raise InvalidInputError("class_prompts must hold at least 2 classes (a list of prompts or of prompt lists)")
        if self.tokenizer is None:
            raise InvalidInputError("string class_prompts need a tokenizer: ContrastiveTask(class_prompts=..., "
                                    "tokenizer=processor)")
        groups = []
        for c, entry in enumerate(prompts):
            texts = [entry] if isinstance(entry, str) else list(entry)
            if not texts or not all(isinstance(t, str) for t in texts):
                raise InvalidInputError(f"class_prompts[{c}] must be a prompt string or a non-empty list of them")
            groups.append(_tokenize(self.tokenizer, texts))
        return groups

    # -- embeddings -------------------------------------------------------
    def scale(self, model: torch.nn.Module) -> torch.Tensor:
        return logit_scale_of(model, self.temperature)

    def embed(self, model: torch.nn.Module, batch: Batch, *, normalize: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Image and text embeddings (B, D) each, L2-normalised by default."""
        images, ids, mask = split_pair_batch(batch)
        v, t = image_embeddings(model, images), text_embeddings(model, ids, mask)
        if v.shape[-1] != t.shape[-1]:
            raise InvalidInputError(f"image embeddings are {v.shape[-1]}-d but text embeddings {t.shape[-1]}-d; the "
                                    "towers must project into one space")
        if normalize:
            return F.normalize(v.float(), dim=-1), F.normalize(t.float(), dim=-1)
        return v, t

    def embeddings(self, model: torch.nn.Module, batch: Batch) -> torch.Tensor:
        """Per-sample embedding for selection: ``[v_i, t_i]`` (normalised image and text, (B, 2D)) for
        ``embedding="joint"``, else the normalised image or text embedding (B, D)."""
        if self.embedding == "image":
            return F.normalize(image_embeddings(model, _images_of(batch)).float(), dim=-1)
        v, t = self.embed(model, batch)
        return t if self.embedding == "text" else torch.cat([v, t], dim=1)

    # -- the Task protocol ------------------------------------------------
    def batch_size(self, batch: Batch) -> int:
        return int(split_pair_batch(batch)[0].shape[0])

    def outputs(self, model: torch.nn.Module, batch: Batch) -> torch.Tensor:
        """The (B, B) logits ``S_ij = s * v_i . t_j`` (rows: images, columns: texts)."""
        v, t = self.embed(model, batch)
        return self.scale(model).to(v.device) * v @ t.T

    def per_sample_loss(self, model: torch.nn.Module, batch: Batch) -> torch.Tensor:
        return symmetric_info_nce(self.outputs(model, batch))

    def labels(self, batch: Batch) -> torch.Tensor:
        y = next((batch[k] for k in _LABEL_KEYS if k in batch), None) if isinstance(batch, Mapping) else None
        if y is None:
            raise InvalidInputError("this contrastive batch has no class labels (a 'labels' entry per pair)")
        return torch.as_tensor(y).reshape(-1).long()

    def with_inputs(self, batch: Batch, inputs: Any) -> Batch:
        if isinstance(batch, Mapping):
            out = dict(batch)
            out[next(k for k in _IMAGE_KEYS if k in batch)] = inputs
            return out
        return (inputs, *tuple(batch)[1:])

    def features_input(self, batch: Batch) -> dict[str, torch.Tensor]:
        images, ids, mask = split_pair_batch(batch)
        out = {"pixel_values": images, "input_ids": ids}
        if mask is not None:
            out["attention_mask"] = mask
        return out

    # -- zero-shot classification ------------------------------------------
    def num_classes(self, model: torch.nn.Module, batch: Batch) -> int | None:
        return None if self._prompt_groups is None else len(self._prompt_groups)

    def class_embeddings(self, model: torch.nn.Module, *, device: Any = None) -> torch.Tensor:
        """One normalised text embedding per class (C, D): the mean of its prompts' normalised embeddings."""
        if self._prompt_groups is None:
            raise InvalidInputError("zero-shot classification needs ContrastiveTask(class_prompts=...)")
        if device is None:
            device = next(model.parameters()).device
        rows = []
        for g in self._prompt_groups:
            t = F.normalize(text_embeddings(model, g["input_ids"].to(device), g["attention_mask"].to(device)).float(),
                            dim=-1)
            rows.append(F.normalize(t.mean(0), dim=-1))
        return torch.stack(rows)

    def zero_shot_logits(self, model: torch.nn.Module, batch: Batch, *,
                         class_embeddings: torch.Tensor | None = None) -> torch.Tensor:
        """``s * v_i . c_k`` for every image and class (B, C); ``batch`` may hold images only."""
        images = _images_of(batch)
        v = F.normalize(image_embeddings(model, images).float(), dim=-1)
        c = self.class_embeddings(model, device=v.device) if class_embeddings is None else class_embeddings.to(v.device)
        return self.scale(model).to(v.device) * v @ c.T

    def label_logits(self, model: torch.nn.Module, batch: Batch) -> torch.Tensor:
        """The zero-shot logits (B, C): a pair's *label* is its class prompt, so a random label (random_label,
        salun, amnesiac relabelling) trains the image towards a random class prompt and the true Fisher samples
        classes from the zero-shot softmax. The pair's own caption plays no part in it."""
        if self._prompt_groups is None:
            raise InvalidInputError("label-based methods (random labels, true Fisher) on a contrastive model need a "
                                    "label space: pass task=ContrastiveTask(class_prompts=[...], tokenizer=processor); a "
                                    "pair's label is then its class prompt and a random label a random class prompt")
        return self.zero_shot_logits(model, batch)

    # -- per-sample view ----------------------------------------------------
    def separable(self, model: torch.nn.Module, data: Any, *, negatives: int = 256, seed: int = 0) -> "Task":
        """A task whose loss for pair ``i`` depends on pair ``i`` only: InfoNCE against a fixed negative bank.

        ``loss_i = (CE([s v_i.t_i, s v_i.T_bank], 0) + CE([s t_i.v_i, s t_i.V_bank], 0)) / 2`` with ``V_bank``,
        ``T_bank`` the detached embeddings of ``negatives`` seeded pairs of ``data`` under ``model``. This is the
        model-output function TRAK uses for CLIP (Park et al., ICML 2023, Sec. 5.1; ``trak/modelout_functions.py``
        ``CLIPModelOutput``, a "simulated batch" of precomputed embeddings), with the InfoNCE loss instead of
        TRAK's margin and one fixed seeded bank instead of a fresh random subset per sample, so that features are
        deterministic. Per-sample gradients (hooks, vmap or a loop) then agree on what a sample's gradient is.
        """
        from ..data import as_dataset
        from torch.utils.data import DataLoader, Subset

        ds = as_dataset(data)
        n = len(ds)  # type: ignore[arg-type]
        if n == 0:
            raise InvalidInputError("cannot build a negative bank from empty data")
        collate = data.collate_fn if isinstance(data, DataLoader) else None
        pick = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[: min(negatives, n)].tolist()
        loader = DataLoader(Subset(ds, pick), batch_size=64, shuffle=False,
                            **({"collate_fn": collate} if collate is not None else {}))
        device = next(model.parameters()).device
        vs, ts = [], []
        flags = [(m, m.training) for m in model.modules()]
        model.eval()
        try:
            with torch.no_grad():
                for b in loader:
                    v, t = self.embed(model, self.to_device(tuple(b) if isinstance(b, list) else b, device))
                    vs.append(v)
                    ts.append(t)
        finally:
            for m, flag in flags:
                m.training = flag
        return _BankContrastiveTask(self, torch.cat(vs), torch.cat(ts))


class _BankContrastiveTask(ContrastiveTask):
    """:meth:`ContrastiveTask.separable`'s per-sample view (same batches, sample-separable loss)."""

    def __init__(self, base: ContrastiveTask, image_bank: torch.Tensor, text_bank: torch.Tensor) -> None:
        self.__dict__.update(base.__dict__)
        self.image_bank, self.text_bank = image_bank, text_bank

    def per_sample_loss(self, model: torch.nn.Module, batch: Batch) -> torch.Tensor:
        v, t = self.embed(model, batch)
        s = self.scale(model).to(v.device)
        pos = s * (v * t).sum(-1, keepdim=True)
        i2t = torch.cat([pos, s * v @ self.text_bank.to(v.device).T], dim=1)
        t2i = torch.cat([pos, s * t @ self.image_bank.to(v.device).T], dim=1)
        target = torch.zeros(v.shape[0], dtype=torch.long, device=v.device)
        return 0.5 * (F.cross_entropy(i2t, target, reduction="none") + F.cross_entropy(t2i, target, reduction="none"))

    def separable(self, model: torch.nn.Module, data: Any, *, negatives: int = 256, seed: int = 0) -> Task:
        return self
