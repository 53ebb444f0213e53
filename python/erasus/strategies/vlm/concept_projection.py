"""Zero-shot class unlearning of prompt-named concepts by projecting them out of CLIP's image projection."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from ...errors import ErasusTypeError, InvalidInputError
from ...registry import register_strategy
from ...tasks.contrastive import text_embeddings
from ..base import Run, UnlearningStrategy
from .common import contrastive_task

__all__ = ["ConceptProjectionStrategy", "concept_projector"]


def concept_projector(forget: torch.Tensor, retain: torch.Tensor | None = None, *, alpha: float = 1.0,
                      tol: float = 1e-6) -> torch.Tensor:
    """``P = I - alpha Q Q^T``, ``Q`` an orthonormal basis of the forget text embeddings' span (rows of
    ``forget``, (k, D)) after removing its component in the span of ``retain`` (m, D) when given, float64 (D, D).

    With ``retain``, ``P e_r = e_r`` for every retain embedding, so an image's logits for retain classes do not
    change (``(P v) . e_r = v . P e_r = v . e_r``), while its logit for a forget class loses ``alpha`` of the part
    of it that retain classes do not explain.
    """
    f = forget.double()
    if retain is not None and retain.numel():
        qr = torch.linalg.svd(retain.double(), full_matrices=False)
        basis = qr.Vh[qr.S > tol * qr.S.max()]
        f = f - (f @ basis.T) @ basis
    u = torch.linalg.svd(f, full_matrices=False)
    keep = u.S > tol * max(float(u.S.max()), 1e-300)
    if not bool(keep.any()):
        raise InvalidInputError("the forget prompts lie in the span of the retain prompts: nothing is left to remove")
    q = u.Vh[keep]
    return torch.eye(f.shape[1], dtype=torch.float64) - alpha * q.T @ q


@register_strategy("concept_projection")
class ConceptProjectionStrategy(UnlearningStrategy):
    """Data-free zero-shot class unlearning of concepts named by prompts, after Mishra et al., "Erasing CLIP
    Memories: Non-Destructive, Data-Free Zero-Shot Class Unlearning in CLIP Models" (arXiv 2512.14137, 2025): the
    final image projection ``W_v`` is replaced by ``P W_v`` with ``P = I - alpha Q Q^T`` and ``Q`` an orthonormal
    basis of the span of the forget classes' normalised text embeddings, so images lose their alignment with the
    forgotten concept in closed form (``alpha < 1``: partial projection). No images are needed.

    ``forget_data``: the prompts naming what to forget (a list of strings, e.g. ``["a photo of a dress"]``);
    ``retain_data`` (optional): prompts of classes to keep; erasus then removes from ``Q`` the span of their
    embeddings (a deviation from the paper), which leaves every image's retain-class logits exactly unchanged.
    ``tokenizer``: tokenizes the prompts (default: the :class:`~erasus.models.CLIPWrapper`'s). Only the vision
    projection changes. The closed-form alternative to ``zero_shot_class_unlearning`` (Kravets & Namboodiri, WACV
    2025, which trains on synthetic images); this method's own code was not available, only its paper's account.
    """

    data_parallel = False

    defaults = {"alpha": 1.0, "tokenizer": None}
    retain = "optional"
    gradient_based = False

    def _prompts(self, data: Any, which: str) -> list[str]:
        if data is None:
            return []
        texts = list(data) if isinstance(data, Sequence) and not isinstance(data, str) else None
        if not texts or not all(isinstance(t, str) for t in texts):
            raise ErasusTypeError(f"concept_projection names concepts by text: {which}_data must be a list of prompt "
                                  f"strings, got {type(data).__name__}")
        return texts

    def _unlearn(self, model: torch.nn.Module, run: Run, *, alpha: float, tokenizer: Any) -> torch.nn.Module:
        from ...models.clip import clip_parameter_groups

        contrastive_task(run.task, self.registry_name)
        if not (isinstance(alpha, (int, float)) and 0 < alpha <= 1):
            raise InvalidInputError(f"alpha must be in (0, 1], got {alpha!r}")
        forget = self._prompts(run.forget_raw, "forget")
        retain = self._prompts(run.retain_raw, "retain")
        tok = tokenizer if tokenizer is not None else getattr(model, "tokenizer", None)
        tok = getattr(tok, "tokenizer", tok)
        if tok is None:
            raise InvalidInputError("concept_projection tokenizes the prompts: pass tokenizer= (a CLIPTokenizer or "
                                    "CLIPProcessor) or use a CLIPWrapper with its processor")
        proj = clip_parameter_groups(model, split_projection=True)["vision_projection"]
        if len(proj) != 1:
            raise InvalidInputError(f"expected one vision projection matrix, found {len(proj)} parameters")
        weight = proj[0]

        def embed(texts: list[str]) -> torch.Tensor:
            enc = tok(texts, padding=True, truncation=True, return_tensors="pt")
            with torch.no_grad():
                e = text_embeddings(model, enc["input_ids"].to(run.device), enc["attention_mask"].to(run.device))
            return F.normalize(e.double(), dim=-1).cpu()

        p = concept_projector(embed(forget), embed(retain) if retain else None, alpha=float(alpha))
        d = p.shape[0]
        with torch.no_grad():
            w = weight.double().cpu()
            if w.shape[0] == d:  # nn.Linear (transformers): v = W h
                new = p @ w
            elif w.ndim == 2 and w.shape[1] == d:  # open_clip: v = h @ proj
                new = w @ p
            else:
                raise InvalidInputError(f"the vision projection has shape {tuple(w.shape)}; expected a {d}-wide side")
            weight.copy_(new.to(weight.dtype))
        self.info_["removed_directions"] = int(round(float(torch.trace(torch.eye(d, dtype=torch.float64) - p))
                                                     / float(alpha)))
        return model
