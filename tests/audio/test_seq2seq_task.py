"""Seq2SeqTask: the per-sample loss of a padded Whisper batch against the model's own loss one sample at a
time and against a hand-written token-by-token decoding loop; collation pads labels with -100."""

from __future__ import annotations

import pytest
import torch

from audio_helpers import items, tiny_whisper
from erasus.data import collate_of
from erasus.errors import InvalidInputError
from erasus.tasks import infer_task
from erasus.tasks.seq2seq import Seq2SeqCollator, Seq2SeqTask

TEXTS = ["go", "seven", "up", "three left"]


def test_collate_pads_labels_with_minus_100_and_stacks_features(proc):
    data = items(proc, TEXTS)
    collate = collate_of(data)
    assert isinstance(collate, Seq2SeqCollator)
    batch = collate(data)
    lengths = [len(d["labels"]) for d in data]
    assert batch["input_features"].shape == (4, 16, 100)  # mel bins x 1 s of 10 ms frames
    assert batch["labels"].shape == (4, max(lengths))
    for i, n in enumerate(lengths):
        assert torch.equal(batch["labels"][i, :n], data[i]["labels"])
        assert bool((batch["labels"][i, n:] == -100).all())


def _token_loop_loss(model, features, labels, start):
    """-mean_t log p(y_t | start, y_<t, x), each step a fresh forward on the growing prefix."""
    logps = []
    for t in range(len(labels)):
        prefix = torch.tensor([[start, *labels[:t].tolist()]])
        logits = model(input_features=features[None], decoder_input_ids=prefix).logits[0, -1].double()
        logps.append(torch.log_softmax(logits, -1)[labels[t]])
    return -torch.stack(logps).mean()


def test_per_sample_loss_equals_one_sample_losses_and_a_token_loop(proc):
    model = tiny_whisper(proc)
    data = items(proc, TEXTS)
    batch = Seq2SeqCollator()(data)
    task = infer_task(model, data)
    assert isinstance(task, Seq2SeqTask)
    got = task.per_sample_loss(model, batch)
    assert got.shape == (4,) and got.requires_grad
    with torch.no_grad():
        own = torch.stack([model(input_features=d["input_features"][None], labels=d["labels"][None]).loss for d in data])
        loop = torch.stack([_token_loop_loss(model, d["input_features"], d["labels"], model.config.decoder_start_token_id)
                            for d in data])
    torch.testing.assert_close(got.detach(), own, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got.detach().double(), loop, rtol=1e-4, atol=1e-5)
    w = torch.tensor([1.0, 0.0, 2.0, 1.0])
    torch.testing.assert_close(task.loss(model, batch, weights=w), (w * got).sum() / w.sum())


def test_bad_batches_are_refused_clearly(proc):
    model = tiny_whisper(proc)
    data = items(proc, TEXTS)
    task = Seq2SeqTask()
    with pytest.raises(InvalidInputError, match="needs labels"):
        task.per_sample_loss(model, {"input_features": data[0]["input_features"][None]})
    with pytest.raises(InvalidInputError, match="max_target_positions"):
        task.per_sample_loss(model, {"input_features": data[0]["input_features"][None],
                                     "labels": torch.zeros(1, 40, dtype=torch.long)})
    with pytest.raises(InvalidInputError, match="no target tokens"):
        task.per_sample_loss(model, {"input_features": data[0]["input_features"][None],
                                     "labels": torch.full((1, 3), -100)})
    odd = dict(data[1], input_features=data[1]["input_features"][:, :50])
    with pytest.raises(InvalidInputError, match="different shapes"):
        Seq2SeqCollator()([data[0], odd])


def test_embeddings_are_the_mean_pooled_encoder_state(proc):
    model = tiny_whisper(proc)
    batch = Seq2SeqCollator()(items(proc, TEXTS))
    with torch.no_grad():
        emb = Seq2SeqTask().embeddings(model, batch)
        ref = torch.stack([model.model.encoder(batch["input_features"][i:i + 1]).last_hidden_state[0].mean(0)
                           for i in range(4)])
    torch.testing.assert_close(emb, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("family", ["t5", "bart"])
def test_text_encoder_decoders_fit_the_same_adapter(family):
    """T5 / BART (``input_ids`` + ``attention_mask`` + ``labels``): the per-sample loss of a padded batch equals
    each sample's own loss computed alone, and infer_task picks the adapter from the config."""
    import transformers

    torch.manual_seed(0)
    if family == "t5":
        model = transformers.T5ForConditionalGeneration(transformers.T5Config(
            vocab_size=40, d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2, decoder_start_token_id=0))
    else:
        model = transformers.BartForConditionalGeneration(transformers.BartConfig(
            vocab_size=40, d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
            decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, max_position_embeddings=32))
    model.eval()
    g = torch.Generator().manual_seed(1)
    srcs = [torch.randint(3, 40, (n,), generator=g) for n in (5, 3, 7)]
    tgts = [torch.randint(3, 40, (n,), generator=g) for n in (2, 4, 3)]
    ids = torch.zeros(3, 7, dtype=torch.long)
    mask = torch.zeros(3, 7, dtype=torch.long)
    labels = torch.full((3, 4), -100)
    for i, (s, t) in enumerate(zip(srcs, tgts)):
        ids[i, :len(s)], mask[i, :len(s)], labels[i, :len(t)] = s, 1, t
    task = infer_task(model)
    assert isinstance(task, Seq2SeqTask)
    got = task.per_sample_loss(model, {"input_ids": ids, "attention_mask": mask, "labels": labels})
    with torch.no_grad():
        ref = torch.stack([model(input_ids=s[None], labels=t[None]).loss for s, t in zip(srcs, tgts)])
    torch.testing.assert_close(got.detach(), ref, rtol=1e-4, atol=1e-5)
