"""Vision-language (CLIP-style) metrics: retrieval Recall@K, zero-shot accuracy on forget / retain classes,
matched-pair cosine and the "cascade" (how far each tower's embeddings of retain data moved).

Pure functions on embeddings (``retrieval_recall``, ``zero_shot_topk``, ``matched_pair_cosine``,
``embedding_shift``) and registry classes that collect embeddings through :class:`erasus.tasks.ContrastiveTask`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from ..errors import InvalidInputError
from ..registry import register_metric
from .accuracy import topk_accuracy
from .base import Metric
from .outputs import evaluating, model_device, ordered_loader, resolve_task

__all__ = [
    "CascadeMetric",
    "ContrastiveMIAMetric",
    "MatchedPairCosineMetric",
    "RetrievalMetric",
    "ZeroShotAccuracyMetric",
    "bank_scores",
    "collect_embeddings",
    "contrastive_membership_scores",
    "embedding_shift",
    "matched_pair_cosine",
    "retrieval_recall",
]


#: similarities closer than this count as ties (float64 rounding of equal cosines)
_TIE = 1e-12


def _check_ks(ks: Sequence[int]) -> tuple[int, ...]:
    out = tuple(int(k) for k in ks)
    if not out or any(k < 1 for k in out):
        raise InvalidInputError(f"ks must be a non-empty list of positive ints, got {ks!r}")
    return out


def retrieval_recall(image_emb: Any, text_emb: Any, *, ks: Sequence[int] = (1, 5, 10),
                     text_to_image: Any = None) -> dict[str, float]:
    """Recall@K of cross-modal retrieval by cosine similarity, both directions, as fractions in [0, 1].

    ``text_to_image[j]`` is the image caption ``j`` describes (default: ``j``, one caption per image). Image->text
    R@K: the fraction of images with at least one of their captions among the K most similar captions;
    text->image R@K: the fraction of captions whose image is among the K most similar images (the COCO / Flickr30k
    protocol of CLIP's Table 13). Ranks count candidates more similar by over ``1e-12`` (float64 cosine), so ties
    favour the match whatever the rounding.
    Keys ``image_to_text_recall@K``, ``text_to_image_recall@K`` and their mean ``mean_recall@K``.
    """
    ks = _check_ks(ks)
    v = F.normalize(torch.as_tensor(image_emb).double(), dim=-1)
    t = F.normalize(torch.as_tensor(text_emb).double(), dim=-1)
    if v.ndim != 2 or t.ndim != 2 or v.shape[1] != t.shape[1] or v.shape[0] == 0 or t.shape[0] == 0:
        raise InvalidInputError(f"retrieval needs image (N, D) and text (M, D) embeddings, got {tuple(v.shape)} and "
                                f"{tuple(t.shape)}")
    if not (torch.isfinite(v).all() and torch.isfinite(t).all()):
        raise InvalidInputError("embeddings contain NaN or infinity")
    owner = torch.arange(t.shape[0]) if text_to_image is None else torch.as_tensor(text_to_image).long().reshape(-1)
    if owner.shape[0] != t.shape[0] or (text_to_image is None and v.shape[0] != t.shape[0]):
        raise InvalidInputError(f"{v.shape[0]} images and {t.shape[0]} captions: pass text_to_image (one image index "
                                "per caption) when they are not one-to-one")
    if owner.numel() and (owner.min() < 0 or owner.max() >= v.shape[0]):
        raise InvalidInputError(f"text_to_image must index the {v.shape[0]} images")
    sim = v @ t.T  # (N, M)
    own = owner[None, :] == torch.arange(v.shape[0])[:, None]  # (N, M): caption j belongs to image i
    # image -> text: rank of the image's best caption among all captions
    best = sim.masked_fill(~own, float("-inf")).max(dim=1).values
    i2t_rank = (sim > best[:, None] + _TIE).sum(1)
    has_caption = own.any(1)
    # text -> image: rank of the caption's image among all images
    matched = sim[owner, torch.arange(t.shape[0])]
    t2i_rank = (sim.T > matched[:, None] + _TIE).sum(1)
    out: dict[str, float] = {}
    for k in ks:
        i2t = float((i2t_rank[has_caption] < k).double().mean()) if has_caption.any() else float("nan")
        t2i = float((t2i_rank < k).double().mean())
        out[f"image_to_text_recall@{k}"] = i2t
        out[f"text_to_image_recall@{k}"] = t2i
        out[f"mean_recall@{k}"] = (i2t + t2i) / 2
    return out


def matched_pair_cosine(image_emb: Any, text_emb: Any) -> float:
    """``mean_i cos(v_i, t_i)`` over matched image-text pairs."""
    v, t = torch.as_tensor(image_emb).double(), torch.as_tensor(text_emb).double()
    if v.shape != t.shape or v.ndim != 2 or v.shape[0] == 0:
        raise InvalidInputError(f"matched pairs need image and text embeddings of one shape (N, D), got "
                                f"{tuple(v.shape)} and {tuple(t.shape)}")
    return float(F.cosine_similarity(v, t, dim=-1).mean())


def embedding_shift(before: Any, after: Any) -> dict[str, float]:
    """How far embeddings moved: ``mean_i (1 - cos(e_i, e'_i))`` and ``mean_i ||e'_i - e_i|| / ||e_i||``."""
    a, b = torch.as_tensor(before).double(), torch.as_tensor(after).double()
    if a.shape != b.shape or a.ndim != 2 or a.shape[0] == 0:
        raise InvalidInputError(f"before and after embeddings must share one shape (N, D), got {tuple(a.shape)} and "
                                f"{tuple(b.shape)}")
    cos = F.cosine_similarity(a, b, dim=-1)
    rel = (b - a).norm(dim=-1) / a.norm(dim=-1).clamp_min(1e-12)
    return {"cosine_distance": float((1 - cos).mean()), "relative_l2": float(rel.mean())}


def collect_embeddings(model: torch.nn.Module, data: Any, *, task: Any = None, batch_size: int = 256,
                       device: Any = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Normalised image and text embeddings (N, D) of every pair in ``data``, in order, and the class labels
    (N,) when the pairs carry them; eval mode, no gradients, each module's train flag restored."""
    from ..tasks.contrastive import ContrastiveTask

    t = resolve_task(model, data, task)
    if not isinstance(t, ContrastiveTask):
        raise InvalidInputError(f"this metric needs a CLIP-style model and image-text pairs (the 'contrastive' task), "
                                f"got the {t.name!r} task")
    dev = model_device(model, device)
    vs, ts, ys = [], [], []
    has_labels = True
    with evaluating(model), torch.no_grad(), torch.random.fork_rng(devices=[]):
        for batch in ordered_loader(data, batch_size=batch_size):
            batch = t.to_device(tuple(batch) if isinstance(batch, list) else batch, dev)
            v, tt = t.embed(model, batch)
            vs.append(v.cpu())
            ts.append(tt.cpu())
            if has_labels:
                try:
                    ys.append(t.labels(batch).cpu())
                except InvalidInputError:
                    has_labels = False
    if not vs:
        raise InvalidInputError("the data set is empty; metrics need at least one pair")
    return torch.cat(vs), torch.cat(ts), (torch.cat(ys) if has_labels else None)


def _image_index(data: Any) -> torch.Tensor | None:
    """Each pair's ``image_index`` (the image it captions) when every pair has one, else None."""
    from ..data import as_dataset

    ds = as_dataset(data)
    first = ds[0]
    if not isinstance(first, dict) or "image_index" not in first:
        return None
    return torch.tensor([int(ds[i]["image_index"]) for i in range(len(ds))])  # type: ignore[arg-type]


@register_metric("retrieval")
class RetrievalMetric(Metric):
    """Image-text retrieval Recall@K in both directions on matched pairs (CLIP, Radford et al. 2021, Table 13).

    ``compute(model, pairs)`` -> ``image_to_text_recall@K``, ``text_to_image_recall@K``, ``mean_recall@K`` for
    each ``K`` in ``ks`` (fractions), and ``pair_cosine``. Each pair's caption is its only correct match, unless the
    pairs carry ``image_index`` (COCO-style data, several captions per image): then each image is ranked once and
    any of its captions counts.
    """

    group = "utility"
    inputs = ("forget",)

    def __init__(self, *, ks: Sequence[int] = (1, 5, 10), **options: Any) -> None:
        super().__init__(**options)
        self.ks = _check_ks(ks)

    def compute(self, model: torch.nn.Module, data: Any) -> dict[str, float]:
        v, t, _ = collect_embeddings(model, data, task=self.task, batch_size=self.batch_size, device=self.device)
        owner = _image_index(data)
        if owner is None:
            return {**retrieval_recall(v, t, ks=self.ks), "pair_cosine": matched_pair_cosine(v, t)}
        ids, first = torch.unique(owner, return_inverse=True)
        keep = torch.tensor([int((first == i).nonzero()[0]) for i in range(ids.numel())])
        return {**retrieval_recall(v[keep], t, ks=self.ks, text_to_image=first), "pair_cosine": matched_pair_cosine(v, t)}


@register_metric("pair_cosine")
class MatchedPairCosineMetric(Metric):
    """Mean cosine similarity of matched image-text pairs on each split given (``{split}_pair_cosine``)."""

    group = "forgetting"
    inputs = ("forget", "retain", "test")

    def compute(self, model: torch.nn.Module, forget: Any = None, retain: Any = None, test: Any = None
                ) -> dict[str, float]:
        splits = {"forget": forget, "retain": retain, "test": test}
        if all(v is None for v in splits.values()):
            raise InvalidInputError("pair_cosine needs at least one of forget=, retain=, test=")
        out = {}
        for split, data in splits.items():
            if data is not None:
                v, t, _ = collect_embeddings(model, data, task=self.task, batch_size=self.batch_size, device=self.device)
                out[f"{split}_pair_cosine"] = matched_pair_cosine(v, t)
        return out


@register_metric("zero_shot_accuracy")
class ZeroShotAccuracyMetric(Metric):
    """Zero-shot classification accuracy (CLIP's protocol): each image is assigned the class whose prompt
    embedding (mean of its normalised prompt embeddings) is most similar.

    Options: ``class_prompts`` (one prompt or list of prompts per class, or tokenized prompts), ``tokenizer``
    (a ``CLIPTokenizer``/``CLIPProcessor``; default the model's, for a :class:`~erasus.models.CLIPWrapper`),
    ``forget_classes`` (class ids being unlearned), ``topk`` (default (1, 5), capped at the number of classes).
    ``compute(model, data)`` on labelled pairs (or image dicts with ``labels``) -> ``zero_shot_top{k}`` over all
    samples and, with ``forget_classes``, ``zero_shot_top{k}_forget`` / ``zero_shot_top{k}_retain`` on the samples
    of forget / other classes (the class-forgetting protocol of Kravets & Namboodiri, WACV 2025).
    """

    group = "forgetting"
    inputs = ("test",)

    def __init__(self, *, class_prompts: Any, tokenizer: Any = None, forget_classes: Sequence[int] = (),
                 topk: Sequence[int] = (1, 5), **options: Any) -> None:
        super().__init__(**options)
        if class_prompts is None:
            raise InvalidInputError("zero_shot_accuracy needs class_prompts (one prompt or prompt list per class)")
        self.class_prompts, self.tokenizer = class_prompts, tokenizer
        self.forget_classes = tuple(int(c) for c in forget_classes)
        self.topk = _check_ks(topk)

    def _task(self, model: torch.nn.Module) -> Any:
        from ..tasks.contrastive import ContrastiveTask

        tok = self.tokenizer if self.tokenizer is not None else getattr(model, "tokenizer", None)
        base = self.task if isinstance(self.task, ContrastiveTask) else None
        return ContrastiveTask(temperature=None if base is None else base.temperature,
                               class_prompts=self.class_prompts, tokenizer=tok)

    def logits(self, model: torch.nn.Module, data: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Zero-shot logits (N, C) and labels (N,) over ``data``."""
        task = self._task(model)
        dev = model_device(model, self.device)
        n_classes = task.num_classes(model, None)
        bad = [c for c in self.forget_classes if not 0 <= c < n_classes]
        if bad:
            raise InvalidInputError(f"forget_classes {bad} are not class ids of the {n_classes} class prompts")
        out, ys = [], []
        with evaluating(model), torch.no_grad(), torch.random.fork_rng(devices=[]):
            classes = task.class_embeddings(model, device=dev)
            for batch in ordered_loader(data, batch_size=self.batch_size):
                batch = task.to_device(tuple(batch) if isinstance(batch, list) else batch, dev)
                out.append(task.zero_shot_logits(model, batch, class_embeddings=classes).cpu())
                ys.append(task.labels(batch).cpu())
        if not out:
            raise InvalidInputError("the data set is empty; metrics need at least one sample")
        return torch.cat(out), torch.cat(ys)

    def compute(self, model: torch.nn.Module, data: Any) -> dict[str, float]:
        logits, labels = self.logits(model, data)
        if labels.numel() and (labels.min() < 0 or labels.max() >= logits.shape[1]):
            raise InvalidInputError(f"labels must be class ids in [0, {logits.shape[1]}) of the class prompts")
        forget = torch.isin(labels, torch.tensor(self.forget_classes, dtype=labels.dtype))
        out: dict[str, float] = {}
        for k in (k for k in self.topk if k <= logits.shape[1]):
            out[f"zero_shot_top{k}"] = topk_accuracy(logits, labels, k=k)
            if self.forget_classes:
                for name, mask in (("forget", forget), ("retain", ~forget)):
                    out[f"zero_shot_top{k}_{name}"] = (topk_accuracy(logits[mask], labels[mask], k=k)
                                                       if mask.any() else float("nan"))
        return out


@register_metric("cascade")
class CascadeMetric(Metric):
    """The forgetting cascade: how far each tower's embeddings of *retain* pairs moved from the original model's.

    ``compute(model, retain, original=model_before_unlearning)`` -> ``cascade_image_cosine_distance``,
    ``cascade_text_cosine_distance`` (``mean_i 1 - cos(e_i, e'_i)``), ``cascade_image_relative_l2``,
    ``cascade_text_relative_l2``, and the retain pairs' cosine before and after (``retain_pair_cosine_before`` /
    ``_after``). Unlearning one modality without a cascade leaves the other tower's numbers near 0.
    """

    group = "utility"
    inputs = ("retain",)

    def compute(self, model: torch.nn.Module, retain: Any, *, original: torch.nn.Module | None = None
                ) -> dict[str, float]:
        if original is None:
            raise InvalidInputError("cascade compares with the model before unlearning; pass original=")
        v1, t1, _ = collect_embeddings(model, retain, task=self.task, batch_size=self.batch_size, device=self.device)
        v0, t0, _ = collect_embeddings(original, retain, task=self.task, batch_size=self.batch_size,
                                       device=self.device)
        out = {f"cascade_image_{k}": v for k, v in embedding_shift(v0, v1).items()}
        out.update({f"cascade_text_{k}": v for k, v in embedding_shift(t0, t1).items()})
        out["retain_pair_cosine_before"] = matched_pair_cosine(v0, t0)
        out["retain_pair_cosine_after"] = matched_pair_cosine(v1, t1)
        return out


def bank_scores(image_emb: Any, text_emb: Any, bank_images: Any, bank_texts: Any, *, scale: float,
                same: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pair InfoNCE loss and softmax entropy against a fixed bank of ``K`` non-member pairs, float64 (N,) each.

    For pair ``i`` the image->text logits are ``s * [v_i . t_i, v_i . T_bank]`` and the text->image logits
    ``s * [t_i . v_i, t_i . V_bank]``; loss and entropy are the means of the two directions. ``same=True`` means the
    pairs are the bank (N = K + 1): pair ``i`` is scored against the other ``K`` pairs. Every split is then scored
    against ``K`` negatives, so the scores of members and non-members are comparable (the in-batch (B, B) logits
    are not: their entropy grows with the batch size).
    """
    v, t = torch.as_tensor(image_emb).double(), torch.as_tensor(text_emb).double()
    vb, tb = torch.as_tensor(bank_images).double(), torch.as_tensor(bank_texts).double()
    pos = scale * (v * t).sum(-1, keepdim=True)
    i2t, t2i = scale * v @ tb.T, scale * t @ vb.T
    if same:
        keep = ~torch.eye(v.shape[0], dtype=torch.bool)
        i2t, t2i = i2t[keep].reshape(v.shape[0], -1), t2i[keep].reshape(v.shape[0], -1)
    losses, entropies = [], []
    for logits in (torch.cat([pos, i2t], 1), torch.cat([pos, t2i], 1)):
        logp = logits.log_softmax(-1)
        losses.append(-logp[:, 0])
        entropies.append(-(logp.exp() * logp).sum(-1))
    return (losses[0] + losses[1]) / 2, (entropies[0] + entropies[1]) / 2


def contrastive_membership_scores(model: torch.nn.Module, splits: dict[str, Any], *, bank: str = "test",
                                  task: Any = None, batch_size: int = 256, device: Any = None, seed: int = 0
                                  ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """``{split: (losses, entropies)}`` of :func:`bank_scores` for every split, the bank being the ``bank`` split
    (non-members): the bank split is scored leave-one-out against its other ``K = n - 1`` pairs, every other split
    against a seeded ``K``-subset of them."""
    if splits.get(bank) is None:
        raise InvalidInputError(f"membership scores on a contrastive model need the {bank!r} split (non-members)")
    embs = {name: collect_embeddings(model, data, task=task, batch_size=batch_size, device=device)
            for name, data in splits.items() if data is not None}
    vb, tb, _ = embs[bank]
    if vb.shape[0] < 2:
        raise InvalidInputError(f"the {bank!r} split needs at least 2 pairs to serve as negatives")
    t = resolve_task(model, splits[bank], task)
    with torch.no_grad():
        scale = float(t.scale(model))
    k = vb.shape[0] - 1
    pick = torch.randperm(vb.shape[0], generator=torch.Generator().manual_seed(seed))[:k]
    out = {}
    for name, (v, tt, _) in embs.items():
        if name == bank:
            out[name] = bank_scores(v, tt, vb, tb, scale=scale, same=True)
        else:
            out[name] = bank_scores(v, tt, vb[pick], tb[pick], scale=scale, same=False)
    return out


@register_metric("contrastive_mia")
class ContrastiveMIAMetric(Metric):
    """Membership inference on a CLIP-style model's contrastive loss: forget pairs (members) against test pairs
    (non-members), each scored by :func:`bank_scores` against one bank of test pairs.

    Keys ``contrastive_mia_loss_*``: Yeom et al.'s loss-threshold attack (:func:`~erasus.metrics.mia_loss.
    loss_threshold_attack`: AUC, balanced accuracy, advantage, TPR at low FPR) on the per-pair InfoNCE loss; and
    ``contrastive_mia_entropy_*``: the SSD/SCRUB entropy attack (:func:`~erasus.metrics.mia.entropy_mia`, with
    ``retain`` when given) on the per-pair softmax entropy. After unlearning, forget pairs should look like test
    pairs (loss AUC near 0.5, as for a model trained without them).
    """

    group = "privacy"
    inputs = ("forget", "test", "retain")

    def __init__(self, *, seed: int = 0, **options: Any) -> None:
        super().__init__(**options)
        self.seed = int(seed)

    def compute(self, model: torch.nn.Module, forget: Any, test: Any, retain: Any = None) -> dict[str, float]:
        from .mia import entropy_mia
        from .mia_loss import loss_threshold_attack

        scores = contrastive_membership_scores(model, {"forget": forget, "test": test, "retain": retain},
                                               task=self.task, batch_size=self.batch_size, device=self.device,
                                               seed=self.seed)
        out = {f"contrastive_mia_loss_{k}": v
               for k, v in loss_threshold_attack(scores["forget"][0], scores["test"][0]).items()}
        entropy = entropy_mia(scores["forget"][1], scores["test"][1],
                              None if retain is None else scores["retain"][1], seed=self.seed)
        out.update({f"contrastive_mia_entropy_{k.removeprefix('mia_')}": v for k, v in entropy.items()})
        return out
