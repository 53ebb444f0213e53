"""Every general strategy runs on the audio families: wav2vec2 / HuBERT sequence classifiers (classification
adapter on ``input_values`` dicts) and Whisper (seq2seq adapter on ``input_features`` + transcripts of
different lengths); ascent-type methods raise the forget loss, and methods that need class labels refuse
Whisper's token labels with a clear error."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import default_collate

import erasus
from erasus.errors import InvalidInputError
from erasus.tasks import ClassificationTask
from erasus.tasks.seq2seq import Seq2SeqCollator, Seq2SeqTask

transformers = pytest.importorskip("transformers")

_TINY = dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
             conv_dim=(8, 8), conv_stride=(5, 4), conv_kernel=(10, 8), num_conv_pos_embeddings=8,
             num_conv_pos_embedding_groups=2, num_labels=3, classifier_proj_size=8, mask_time_prob=0.0, layerdrop=0.0)

# (name, options): ascent-type methods are checked to raise the forget loss
STRATEGIES = [("gradient_ascent", {"lr": 1e-2, "optimizer": "adam"}, True),
              ("grad_diff", {"lr": 1e-2, "optimizer": "adam"}, True),
              ("neg_grad_plus", {"lr": 1e-2, "optimizer": "adam", "beta": 0.5}, True),
              ("random_label", {"lr": 1e-2, "optimizer": "adam"}, True),
              ("salun", {"lr": 1e-2, "optimizer": "adam"}, True),
              ("scrub", {"lr": 1e-2}, False), ("bad_teacher", {"lr": 1e-2}, False),
              ("ssd", {"alpha": 1.0}, False), ("unsir", {"lr": 1e-2}, False),
              ("fisher_forgetting", {"alpha": 1e-4}, False)]


def _classifier(kind, seed=0):
    torch.manual_seed(seed)
    cls = transformers.Wav2Vec2ForSequenceClassification if kind == "wav2vec2" else transformers.HubertForSequenceClassification
    cfg = (transformers.Wav2Vec2Config if kind == "wav2vec2" else transformers.HubertConfig)(**_TINY)
    return cls(cfg).eval()


def _clips(n, seed):
    g = torch.Generator().manual_seed(seed)
    return [{"input_values": torch.randn(800, generator=g), "labels": torch.tensor(i % 3)} for i in range(n)]


def _changed(a, b):
    return any(not torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


@pytest.mark.parametrize("kind", ["wav2vec2", "hubert"])
@pytest.mark.parametrize("name,opts,ascent", STRATEGIES, ids=[s[0] for s in STRATEGIES])
def test_general_strategies_on_audio_classifiers(kind, name, opts, ascent):
    model = _classifier(kind)
    forget, retain = _clips(6, 1), _clips(9, 2)
    out = erasus.get_strategy(name, batch_size=6, **opts).unlearn(model=model, forget_data=forget, retain_data=retain,
                                                                   steps=2, progress=False)
    assert type(out) is type(model) and _changed(model, out)
    assert all(torch.isfinite(p).all() for p in out.parameters())
    if ascent and name not in ("random_label", "salun"):
        # (random labels include the true one: on an untrained 3-class model they need not raise the loss)
        batch, task = default_collate(forget), ClassificationTask()
        with torch.no_grad():
            assert float(task.loss(out, batch)) > float(task.loss(model, batch))


@pytest.mark.parametrize("name,opts,ascent", STRATEGIES, ids=[s[0] for s in STRATEGIES])
def test_general_strategies_on_whisper(memorised, name, opts, ascent):
    model, forget, retain = memorised
    strategy = erasus.get_strategy(name, batch_size=4, **opts)
    if name == "unsir":
        with pytest.raises(InvalidInputError, match="token labels"):
            strategy.unlearn(model=model, forget_data=forget, retain_data=retain, steps=2, progress=False)
        return
    if name == "fisher_forgetting":
        with pytest.raises(InvalidInputError, match="fisher='empirical'"):
            strategy.unlearn(model=model, forget_data=forget, retain_data=retain, steps=2, progress=False)
        strategy = erasus.get_strategy(name, fisher="empirical", **opts)
    out = strategy.unlearn(model=model, forget_data=forget, retain_data=retain, steps=3, progress=False)
    assert type(out) is type(model) and _changed(model, out)
    assert all(torch.isfinite(p).all() for p in out.parameters())
    if ascent:
        batch, task = Seq2SeqCollator()(forget), Seq2SeqTask()
        with torch.no_grad():
            assert float(task.loss(out, batch)) > float(task.loss(model, batch)) + 0.1


def test_lora_on_whisper_merges_back_and_raises_the_forget_loss(memorised):
    pytest.importorskip("peft")
    model, forget, _ = memorised
    out = erasus.get_strategy("gradient_ascent", lr=5e-2).unlearn(
        model=model, forget_data=forget, steps=4, progress=False,
        lora={"r": 2, "lora_alpha": 4, "target_modules": ["q_proj", "v_proj"]})
    assert type(out) is type(model)
    assert set(dict(out.named_parameters())) == set(dict(model.named_parameters()))
    changed = [n for (n, a), b in zip(model.named_parameters(), out.parameters()) if not torch.equal(a, b)]
    assert changed and all("q_proj" in n or "v_proj" in n for n in changed)
    batch = Seq2SeqCollator()(forget)
    with torch.no_grad():
        assert float(Seq2SeqTask().loss(out, batch)) > float(Seq2SeqTask().loss(model, batch))


def test_lora_on_a_wav2vec2_classifier():
    pytest.importorskip("peft")
    model, forget = _classifier("wav2vec2"), _clips(6, 1)
    out = erasus.get_strategy("gradient_ascent", lr=5e-2, optimizer="adam").unlearn(
        model=model, forget_data=forget, steps=3, progress=False,
        lora={"r": 2, "lora_alpha": 4, "target_modules": ["q_proj", "v_proj"]})
    assert type(out) is type(model) and _changed(model, out)


def test_npo_on_whisper_transcripts_starts_at_its_closed_form_and_lowers_their_likelihood(memorised):
    import math

    model, forget, retain = memorised
    batch, task = Seq2SeqCollator()(forget), Seq2SeqTask()
    with torch.no_grad():  # summed transcript log-likelihood = -(mean token CE) x (number of tokens)
        n_tokens = (batch["labels"] != -100).sum(-1)
        torch.testing.assert_close(task.log_likelihood(model, batch), -task.per_sample_loss(model, batch) * n_tokens)
    s = erasus.get_strategy("npo", lr=1e-2, beta=0.1, batch_size=4)
    out = s.unlearn(model=model, forget_data=forget, steps=5, progress=False)
    # step 0: theta = reference, so L_NPO = -(2/beta) log sigmoid(0) = (2/beta) log 2
    assert s.history_[0] == pytest.approx(2 / 0.1 * math.log(2), rel=1e-5)
    with torch.no_grad():
        assert bool((task.log_likelihood(out, batch) < task.log_likelihood(model, batch)).all())
    with pytest.raises(InvalidInputError, match="'nll'"):
        erasus.get_strategy("npo", retain_loss="kl").unlearn(model=model, forget_data=forget, retain_data=retain,
                                                             steps=1, progress=False)
    with pytest.raises(InvalidInputError, match="needs a causal LM"):
        erasus.get_strategy("rmu").unlearn(model=model, forget_data=forget, retain_data=retain, steps=1, progress=False)
