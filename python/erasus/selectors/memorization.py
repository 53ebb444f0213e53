"""Memorization: rank forget samples by how much the model memorised them (RUM, Zhao et al., NeurIPS 2024).

"What makes unlearning hard and what to do about it" (Zhao, Kurmanji, Bărbulescu, Triantafillou, Triantafillou;
official code ``github.com/kairanzhao/RUM``) finds that highly memorised forget samples are the hard ones, and
refines a forget set into memorisation groups that are unlearned apart. In erasus terms: low-memorisation samples
are **concept-like** (the model predicts them from what other samples taught it, so a few of them carry the
update's direction) and high-memorisation samples are **record-like** (each is known only because it was trained
on, so each needs its own unlearning). The per-sample proxies:

* ``heldout_retrain`` (RUM's ``memorization_proxy/heldout_retrain.py``, the default): fine-tune a copy of the model
  on held-out data (SGD, momentum 0.9, weight decay 5e-4, lr 0.1, <= 30 epochs, stopped after 4 epochs without a
  lower epoch loss, as there) and score ``KL_sym(p, q) = (KL(p||q) + KL(q||p)) / 2`` of the two models' softmax
  outputs, each clamped at ``1e-10``; samples the held-out fine-tune moves most were memorised.
* ``confidence_gap``: ``p_y(x; model) - p_y(x; reference)`` against a ``reference_model`` that never trained on
  the sample (the retrained oracle, or a model trained on held-out data); ``loss_gap``: ``l(x; reference) -
  l(x; model)``. Both are single-pair versions of the estimate below.
* ``feldman_zhang`` (Feldman & Zhang, NeurIPS 2020, "What neural networks memorize and why"; RUM's
  ``surgical_plugins/cifar_infl_mem_torch.py``): train ``n_models`` models from ``model_factory`` on the retain
  data plus a random ``subset_ratio`` of the forget set each, and score
  ``mem(i) = P[correct(i) | i in S] - P[correct(i) | i not in S]`` (masked means, denominators floored at
  ``1e-10`` as there). Affordable for small models only: it trains ``n_models`` models.

``keep="most"`` picks the ``k`` most memorised samples (the record-like part), ``"least"`` the ``k`` least
(concept-like), ``"stratified"`` splits at ``threshold`` (default: the median score) with
:func:`split_by_memorization` and spends ``k`` on the two parts in proportion to their sizes, each part covered by
evenly spaced ranks. With ``features=`` the first column is taken as precomputed scores.
Deviation from RUM: RUM unlearns each group with its own algorithm; this selector only ranks and splits — run a
strategy (or another selector) on each part yourself.
"""

from __future__ import annotations

import copy
from typing import Any, Literal

import numpy as np
from typing import TYPE_CHECKING

from ..errors import InvalidInputError
from ..registry import register_selector
from ..selection import Selection
from ._common import ContextSelector, as_labels, model_outputs, score_selection

if TYPE_CHECKING:  # torch is imported where it is used: the registry loads every selector, and
    import torch  # numpy-only selection must not pay torch's ~2 s import

__all__ = ["MemorizationSelector", "symmetric_kl", "confidence_gap", "loss_gap", "feldman_zhang_memorization",
           "heldout_finetune", "split_by_memorization", "PROXIES"]

PROXIES = ("heldout_retrain", "confidence_gap", "loss_gap", "feldman_zhang")
Proxy = Literal["heldout_retrain", "confidence_gap", "loss_gap", "feldman_zhang"]


def _log_softmax(logits: Any) -> torch.Tensor:
    import torch
    return torch.log_softmax(torch.as_tensor(logits).double(), dim=1)


def symmetric_kl(logits: Any, other_logits: Any, *, eps: float = 1e-10) -> np.ndarray:
    """``(KL(p||q) + KL(q||p)) / 2`` per row of the two softmax outputs, clamped at ``eps`` (RUM's ``calculate_kl``)."""
    p = _log_softmax(logits).exp().clamp(min=eps)
    q = _log_softmax(other_logits).exp().clamp(min=eps)
    return (((p * (p.log() - q.log())).sum(1) + (q * (q.log() - p.log())).sum(1)) / 2).numpy()


def confidence_gap(logits: Any, reference_logits: Any, labels: Any) -> np.ndarray:
    """``p_y(model) - p_y(reference)`` per sample: the confidence the sample's own training bought."""
    import torch
    y = torch.as_tensor(np.asarray(labels)).long().reshape(-1, 1)
    return (_log_softmax(logits).exp().gather(1, y) - _log_softmax(reference_logits).exp().gather(1, y)).reshape(-1).numpy()


def loss_gap(logits: Any, reference_logits: Any, labels: Any) -> np.ndarray:
    """``CE(reference) - CE(model)`` per sample."""
    import torch
    y = torch.as_tensor(np.asarray(labels)).long().reshape(-1, 1)
    return (_log_softmax(logits).gather(1, y) - _log_softmax(reference_logits).gather(1, y)).reshape(-1).numpy()


def feldman_zhang_memorization(correct: Any, member: Any, *, eps: float = 1e-10) -> np.ndarray:
    """``mean(correct | member) - mean(correct | not member)`` per column of two ``(models, n)`` matrices."""
    c = np.asarray(correct, dtype=np.float64)
    m = np.asarray(member, dtype=bool)
    if c.shape != m.shape or c.ndim != 2:
        raise InvalidInputError(f"correct and member must be (models, n) matrices of one shape, got {c.shape} and "
                                f"{m.shape}")
    inside = (c * m).sum(0) / np.maximum(m.sum(0), eps)
    outside = (c * ~m).sum(0) / np.maximum((~m).sum(0), eps)
    return inside - outside


def split_by_memorization(scores: Any, *, threshold: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(concept_like, record_like)`` positions: scores ``<= threshold`` and ``> threshold`` (default: the median)."""
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if s.size == 0 or not np.isfinite(s).all():
        raise InvalidInputError("memorization scores must be a non-empty finite vector")
    t = float(np.median(s)) if threshold is None else float(threshold)
    return np.flatnonzero(s <= t), np.flatnonzero(s > t)


def heldout_finetune(model: torch.nn.Module, heldout: Any, *, epochs: int = 30, lr: float = 0.1,
                     momentum: float = 0.9, weight_decay: float = 5e-4, batch_size: int = 256, patience: int = 4,
                     seed: int = 0, task: Any = None) -> torch.nn.Module:
    """A copy of ``model`` fine-tuned on ``heldout`` with RUM's recipe (SGD; stops after ``patience`` epochs
    without a lower summed epoch loss)."""
    import torch
    from torch.utils.data import DataLoader

    from ..data import as_dataset, collate_of
    from ..metrics.outputs import model_device, resolve_task

    tuned = copy.deepcopy(model)
    ds = as_dataset(heldout)
    t = resolve_task(tuned, ds, task)
    device = model_device(tuned)
    loader = DataLoader(ds, batch_size=batch_size, shuffle=True, collate_fn=collate_of(heldout),
                        generator=torch.Generator().manual_seed(seed))
    opt = torch.optim.SGD(tuned.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    best, stale = float("inf"), 0
    tuned.train()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for _ in range(epochs):
            running = 0.0
            for batch in loader:
                opt.zero_grad(set_to_none=True)
                loss = t.loss(tuned, t.to_device(tuple(batch) if isinstance(batch, list) else batch, device))
                if not torch.isfinite(loss):
                    raise InvalidInputError(f"the held-out fine-tune's loss became {float(loss)}; lower finetune_lr "
                                            f"(now {lr})")
                loss.backward()
                opt.step()
                running += float(loss.detach())
            if running < best:
                best, stale = running, 0
            else:
                stale += 1
                if stale >= patience:
                    break
    return tuned.eval()


@register_selector("memorization")
class MemorizationSelector(ContextSelector):
    """Per-sample memorization proxy (RUM, Zhao et al., NeurIPS 2024; see the module docstring), then keep the
    ``most`` / ``least`` memorised samples or a ``stratified`` pick from the concept-like and record-like parts.

    Options: ``proxy`` (``heldout_retrain`` | ``confidence_gap`` | ``loss_gap`` | ``feldman_zhang``),
    ``heldout_data`` (heldout_retrain), ``reference_model`` (the gaps), ``model_factory`` + ``retain_data``
    (+ ``n_models=8``, ``subset_ratio=0.7``, and ``train_fn(model, dataset) -> model`` or the default Adam recipe
    :func:`erasus.metrics.train_classifier` with ``train_epochs=10``, ``train_lr=1e-3``) for feldman_zhang,
    ``finetune_epochs=30``, ``finetune_lr=0.1`` (RUM's defaults), ``keep``, ``threshold``, ``batch_size``.
    ``Selection.metadata`` holds every ``scores`` entry, the ``threshold`` and the ``record_like`` positions.
    """

    def __init__(self, *, seed: int = 0, proxy: Proxy = "heldout_retrain",
                 keep: Literal["most", "least", "stratified"] = "most", threshold: float | None = None,
                 heldout_data: Any = None, reference_model: Any = None, model_factory: Any = None,
                 retain_data: Any = None, n_models: int = 8, subset_ratio: float = 0.7, train_epochs: int = 10,
                 train_lr: float = 1e-3, train_fn: Any = None, finetune_epochs: int = 30, finetune_lr: float = 0.1,
                 batch_size: int | None = None) -> None:
        import torch
        if proxy not in PROXIES:
            raise InvalidInputError(f"proxy must be one of {PROXIES}, got {proxy!r}")
        if keep not in ("most", "least", "stratified"):
            raise InvalidInputError(f"keep must be 'most', 'least' or 'stratified', got {keep!r}")
        if threshold is not None and not (isinstance(threshold, (int, float)) and np.isfinite(threshold)):
            raise InvalidInputError(f"threshold must be a finite number or None, got {threshold!r}")
        if proxy in ("confidence_gap", "loss_gap") and reference_model is not None \
                and not isinstance(reference_model, torch.nn.Module):
            raise InvalidInputError(f"reference_model must be a torch.nn.Module, got {type(reference_model).__name__}")
        if proxy == "feldman_zhang":
            if model_factory is not None and not callable(model_factory):
                raise InvalidInputError("model_factory must be a callable returning a fresh untrained model")
            if train_fn is not None and not callable(train_fn):
                raise InvalidInputError("train_fn must be a callable train_fn(model, dataset) -> trained model")
            if not (isinstance(n_models, int) and n_models >= 2):
                raise InvalidInputError(f"n_models must be an integer >= 2, got {n_models!r}")
            if not 0 < subset_ratio < 1:
                raise InvalidInputError(f"subset_ratio must be in (0, 1), got {subset_ratio!r}")
        for name, value in (("finetune_epochs", finetune_epochs), ("train_epochs", train_epochs)):
            if not (isinstance(value, int) and value > 0):
                raise InvalidInputError(f"{name} must be a positive integer, got {value!r}")
        super().__init__(seed=seed, proxy=proxy, keep=keep, threshold=threshold)
        self.proxy, self.keep, self.threshold = proxy, keep, threshold
        self.heldout_data, self.reference_model = heldout_data, reference_model
        self.model_factory, self.retain_data = model_factory, retain_data
        self.n_models, self.subset_ratio = n_models, float(subset_ratio)
        self.train_epochs, self.train_lr, self.train_fn = train_epochs, float(train_lr), train_fn
        self.finetune_epochs, self.finetune_lr = finetune_epochs, float(finetune_lr)
        self.batch_size = batch_size

    # ------------------------------------------------------------------------------------------ scores
    def scores(self, model: torch.nn.Module, data: Any, *, task: Any = None) -> np.ndarray:
        """The proxy's per-sample scores of ``data`` under ``model`` (higher: more memorised)."""
        logits, labels = model_outputs(model, data, task=task, batch_size=self.batch_size)
        if self.proxy == "heldout_retrain":
            if self.heldout_data is None:
                raise InvalidInputError("proxy 'heldout_retrain' needs heldout_data= (samples the model never trained "
                                        "on, e.g. a validation split)")
            tuned = heldout_finetune(model, self.heldout_data, epochs=self.finetune_epochs, lr=self.finetune_lr,
                                     batch_size=self.batch_size or 256, seed=self.seed, task=task)
            other, _ = model_outputs(tuned, data, task=task, batch_size=self.batch_size)
            return symmetric_kl(logits, other)
        y = as_labels(labels, logits.shape[0])
        if self.proxy in ("confidence_gap", "loss_gap"):
            if self.reference_model is None:
                raise InvalidInputError(f"proxy {self.proxy!r} needs reference_model= (a model that never trained on "
                                        "these samples: the retrained model, or one trained on held-out data)")
            ref, _ = model_outputs(self.reference_model, data, task=task, batch_size=self.batch_size)
            fn = confidence_gap if self.proxy == "confidence_gap" else loss_gap
            return fn(logits, ref, y)
        return self._feldman_zhang(data, y, task=task)

    def _feldman_zhang(self, data: Any, y: np.ndarray, *, task: Any) -> np.ndarray:
        import torch
        from torch.utils.data import ConcatDataset

        from ..data import as_dataset, subset
        from ..metrics import train_classifier

        if self.model_factory is None or self.retain_data is None:
            raise InvalidInputError("proxy 'feldman_zhang' needs model_factory= (a fresh untrained model per call) "
                                    "and retain_data= (the rest of the training set)")
        forget, retain = as_dataset(data), as_dataset(self.retain_data)
        n = len(forget)  # type: ignore[arg-type]
        from tqdm.auto import tqdm

        member = self._memberships(n)
        correct = np.zeros((self.n_models, n), dtype=np.float64)
        for m in tqdm(range(self.n_models), desc="memorization: subset models", leave=False):
            torch.manual_seed(self.seed * 1_000 + m)
            model = self.model_factory()
            train = ConcatDataset([retain, subset(forget, np.flatnonzero(member[m]))])
            if self.train_fn is not None:
                model = self.train_fn(model, train)
            else:
                train_classifier(model, train, task=task, epochs=self.train_epochs, lr=self.train_lr,
                                 seed=self.seed + m)
            logits, _ = model_outputs(model, data, task=task, batch_size=self.batch_size)
            correct[m] = (logits.argmax(1).numpy() == y)
        return feldman_zhang_memorization(correct, member)

    def _memberships(self, n: int) -> np.ndarray:
        """Independent random ``subset_ratio`` subsets, one per model, redrawn (seeded) until every sample is in
        some subset and out of another: the estimate needs both kinds of model for each sample."""
        size = min(n - 1, max(1, int(round(self.subset_ratio * n))))
        if n < 2:
            raise InvalidInputError("proxy 'feldman_zhang' needs at least 2 forget samples")
        rng = np.random.default_rng(self.seed)
        for _ in range(1_000):
            member = np.zeros((self.n_models, n), dtype=bool)
            for m in range(self.n_models):
                member[m, rng.choice(n, size=size, replace=False)] = True
            if member.any(0).all() and (~member).any(0).all():
                return member
        raise InvalidInputError(f"with n_models={self.n_models} some forget sample is always in (or always out of) "
                                "the subsets; raise n_models")

    def _from_model(self, model: Any, data: Any, *, task: Any, context: dict[str, Any]) -> tuple[Any, Any]:
        scores = self.scores(model, data, task=task)
        context["scores"] = scores
        return scores[:, None].astype(np.float32), None

    # ------------------------------------------------------------------------------------------ selection
    def _select(self, x: np.ndarray, k: int, *, labels: np.ndarray | None) -> Selection:
        scores = np.asarray(self._context.get("scores", x[:, 0]), dtype=np.float64)
        concept, record = split_by_memorization(scores, threshold=self.threshold)
        threshold = float(np.median(scores)) if self.threshold is None else float(self.threshold)
        meta = {"threshold": threshold, "record_like": record, "proxy": self.proxy}
        if self.keep != "stratified":
            return score_selection(scores, k, largest=self.keep == "most", metadata=meta)
        k_record = int(round(k * record.size / scores.size))
        k_record = min(max(k_record, 1 if record.size and k > 1 else 0), record.size, k)
        k_concept = k - k_record
        if k_concept > concept.size:
            k_concept, k_record = concept.size, k - concept.size
        picked = np.concatenate([_spread(concept, scores, k_concept), _spread(record, scores, k_record)])
        return Selection(picked.astype(np.int64), np.ones(picked.size, dtype=np.float32), gains=scores[picked],
                         metadata={**meta, "scores": scores.tolist(), "record_like": record.tolist()})


def _spread(part: np.ndarray, scores: np.ndarray, k: int) -> np.ndarray:
    """``k`` positions of ``part`` at evenly spaced ranks of its scores (its whole range, not only one end)."""
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    ordered = part[np.argsort(-scores[part], kind="stable")]
    ranks = np.unique(np.round(np.linspace(0, ordered.size - 1, k)).astype(np.int64))
    return ordered[ranks]
