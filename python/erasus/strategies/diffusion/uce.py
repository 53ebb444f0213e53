"""UCE: Unified Concept Editing (Gandikota et al., "Unified Concept Editing in Diffusion Models", WACV 2024)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from ...errors import InvalidInputError
from ...registry import register_strategy
from ..base import Run
from .common import DiffusionStrategy

__all__ = ["UCE", "concept_embeddings", "full_embeddings", "span_embeddings", "uce_edit"]


def concept_embeddings(model: Any, prompts: Sequence[str]) -> torch.Tensor:
    """``(n, D)``: the text encoder's hidden state at each prompt's last token before end-of-text (position
    ``attention_mask.sum() - 2``; the start token for the empty prompt), as the official ``uce_sd_erase.py`` takes it."""
    out = []
    with torch.no_grad():
        for prompt in prompts:
            mask = model.tokenize([prompt])["attention_mask"]
            out.append(model.encode_prompt([prompt])[0, int(mask.sum()) - 2])
    return torch.stack(out)


def span_embeddings(model: Any, erase: Sequence[str], guides: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor,
                                                                                      torch.Tensor]:
    """Row-aligned erase / guide embeddings ``(n, D)`` and each row's forget-prompt index ``(n,)``, as the paper-era
    official ``train-scripts/train_erase.py::edit_model`` takes them: every position from each prompt's last token
    to the end of the padded sequence (the end-of-text and padding states, which a causal text encoder fills with
    the whole prompt), cut to a common length when the erase and guide prompts' last tokens sit apart."""
    rows_e, rows_g, owner = [], [], []
    with torch.no_grad():
        for i, (e, g) in enumerate(zip(erase, guides, strict=True)):
            mask = model.tokenize([e, g])["attention_mask"]
            emb = model.encode_prompt([e, g])
            last_e, last_g = int(mask[0].sum()) - 2, int(mask[1].sum()) - 2
            far, length = max(last_e, last_g), emb.shape[1]
            rows_e.append(emb[0, last_e:length - (far - last_e)])
            rows_g.append(emb[1, last_g:length - (far - last_g)])
            owner += [i] * rows_e[-1].shape[0]
    return torch.cat(rows_e), torch.cat(rows_g), torch.tensor(owner)


def full_embeddings(model: Any, prompts: Sequence[str]) -> torch.Tensor:
    """``(n * T, D)``: every position of each padded prompt (the paper-era official code's preserve terms)."""
    with torch.no_grad():
        return torch.cat([model.encode_prompt([p])[0] for p in prompts])


def uce_edit(weight: torch.Tensor, erase: torch.Tensor, guide: torch.Tensor, preserve: torch.Tensor, *,
             lamb: float, erase_scale: float = 1.0, preserve_scale: float = 1.0,
             erase_weights: torch.Tensor | None = None) -> torch.Tensor:
    """The UCE closed form (the paper's Eq. 7) for one projection ``W_old`` (out, D):

    ``W = (lambda W_old + s_e sum_e v*_e c_e^T + s_p sum_p (W_old c_p) c_p^T)
         (lambda I + s_e sum_e c_e c_e^T + s_p sum_p c_p c_p^T)^-1`` with ``v*_e = W_old g_e``,

    ``erase`` / ``guide`` ``(n_e, D)`` row-aligned concept embeddings, ``preserve`` ``(n_p, D)``; ``erase_weights``
    ``(n_e,)`` scale each erase term (a weighted coreset's weights, normalised to mean 1; default all 1). Solved in
    float64 (the official code inverts in float32); returned in ``weight``'s dtype."""
    w = weight.detach().double()
    c_e, g, c_p = erase.double(), guide.double(), preserve.double()
    if erase_weights is not None:
        r = erase_weights.double().to(w.device).reshape(-1, 1).sqrt()
        c_e, g = c_e * r, g * r  # sum_e w_e v_e c_e^T = sum_e (sqrt(w_e) W g_e)(sqrt(w_e) c_e)^T
    eye = torch.eye(w.shape[1], dtype=torch.float64, device=w.device)
    values = g @ w.T  # v*_e = W_old g_e, one per row
    mat1 = lamb * w + erase_scale * values.T @ c_e + preserve_scale * (c_p @ w.T).T @ c_p
    mat2 = lamb * eye + erase_scale * c_e.T @ c_e + preserve_scale * c_p.T @ c_p
    # W = mat1 mat2^-1, i.e. mat2 W^T = mat1^T (mat2 is symmetric)
    return torch.linalg.solve(mat2, mat1.T).T.to(weight.dtype)


@register_strategy("uce")
class UCE(DiffusionStrategy):
    """UCE (Gandikota et al., WACV 2024): a closed-form edit of every cross-attention key and value projection
    (``attn2.to_k``, ``attn2.to_v``; the wrapper's ``cross_attn_kv`` group) so that each erased concept's embedding
    maps to what its guide concept's did, while preserved concepts keep their keys and values (:func:`uce_edit`).
    No gradients, no steps.

    Forget data: prompts of the concepts to erase. Retain data (optional): prompts of concepts to preserve (plus
    ``preserve=``). ``guide``: one prompt for all (default ``""``, the official choice for objects; the official
    code uses ``"art"`` for artistic styles) or a list aligned with the forget prompts. Defaults from the official
    ``rohitgandikota/unified-concept-editing`` ``trainscripts/uce_sd_erase.py``: ``lamb`` 0.5, ``erase_scale`` 1,
    ``preserve_scale`` 1, concept embeddings at the last token (:func:`concept_embeddings`). A projection's bias,
    if any (SD's have none), is kept. Coreset ``weights`` scale each erased concept's term (normalised to mean 1).

    ``token_span="to_end"`` edits as the paper-era official ``train-scripts/train_erase.py`` (the code released with
    the WACV paper) does instead: erase terms for every position from the last token to the end of the padded
    sequence (:func:`span_embeddings`), preserve terms for every position of each preserved prompt
    (:func:`full_embeddings`), and the empty prompt preserved when nothing else is. It matters where a concept
    spans several tokens or the text encoder's end-of-text states carry it (a character-level tokenizer).
    """

    data_parallel = False

    defaults = {"guide": "", "preserve": (), "lamb": 0.5, "erase_scale": 1.0, "preserve_scale": 1.0,
                "token_span": "last"}
    retain = "optional"
    gradient_based = False

    def check_options(self, opts: Mapping[str, Any]) -> None:
        guide = opts["guide"]
        if not (isinstance(guide, str) or (isinstance(guide, Sequence) and all(isinstance(g, str) for g in guide))):
            raise InvalidInputError(f"guide must be a prompt or a list of prompts, got {guide!r}")
        if isinstance(opts["preserve"], str) or not all(isinstance(p, str) for p in opts["preserve"]):
            raise InvalidInputError(f"preserve must be a list of prompts, got {opts['preserve']!r}")
        for key in ("lamb", "erase_scale", "preserve_scale"):
            value = opts[key]
            if not isinstance(value, (int, float)) or not value >= 0 or value != value:
                raise InvalidInputError(f"{key} must be a non-negative number, got {value!r}")
        if not opts["lamb"] > 0:
            raise InvalidInputError("lamb must be positive: it keeps the edit's linear system invertible")
        if opts["token_span"] not in ("last", "to_end"):
            raise InvalidInputError(f"token_span must be 'last' or 'to_end', got {opts['token_span']!r}")

    def _unlearn(self, model: Any, run: Run, *, guide: Any, preserve: Sequence[str], lamb: float,
                 erase_scale: float, preserve_scale: float, token_span: str) -> Any:
        erase = self.forget_prompts(run)
        guides = [guide] * len(erase) if isinstance(guide, str) else list(guide)
        if len(guides) != len(erase):
            raise InvalidInputError(f"guide has {len(guides)} prompts but there are {len(erase)} forget prompts")
        kept = list(dict.fromkeys([*self.retain_prompts(run), *preserve]))
        scale = None if run.weights is None else run.weights / run.weights.mean()
        if token_span == "last":
            c_e, c_g = concept_embeddings(model, erase), concept_embeddings(model, guides)
            c_p = concept_embeddings(model, kept) if kept else c_e.new_zeros((0, c_e.shape[1]))
        else:
            c_e, c_g, owner = span_embeddings(model, erase, guides)
            scale = None if scale is None else scale[owner]
            kept = kept or [""]  # the official code preserves the empty prompt when given nothing to preserve
            c_p = full_embeddings(model, kept)
        names = model.named_parameter_groups()["cross_attn_kv"]
        params = dict(model.named_parameters())
        edited = 0
        with torch.no_grad():
            for name in names:
                if not name.endswith(".weight"):
                    continue
                p = params[name]
                p.copy_(uce_edit(p, c_e.to(p), c_g.to(p), c_p.to(p), lamb=lamb, erase_scale=erase_scale,
                                 preserve_scale=preserve_scale, erase_weights=scale))
                edited += 1
        self.info_ = {"edited_projections": edited, "erased": erase, "guides": guides, "preserved": kept,
                      "token_span": token_span, "erase_rows": int(c_e.shape[0])}
        return model
