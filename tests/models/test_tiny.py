"""``erasus.models.tiny``: the offline builders the tests and the examples' ``--tiny`` runs share, checked against
what a user of them relies on (token ids by hand, image-token counts from the configs, pixel statistics)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from erasus.errors import InvalidInputError
from erasus.models import tiny


def test_word_tokenizer_ids_and_image_token():
    tok = tiny.word_tokenizer(["Alba wrote it .", "Alba ?"], extra_special_tokens={"image_token": "<image>"})
    vocab = tok.get_vocab()
    assert [vocab[t] for t in ("[PAD]", "[UNK]", "<s>", "</s>", "<image>")] == [0, 1, 2, 3, 4]
    assert tok.image_token == "<image>" and tok.image_token_id == 4
    # "<s>" first, then one id per whitespace/punctuation piece; unseen words map to [UNK]
    assert tok("Alba wrote ? zebra").input_ids == [2, vocab["Alba"], vocab["wrote"], vocab["?"], 1]
    assert "<image>" not in tiny.word_tokenizer(["a b"]).get_vocab()


def test_causal_lm_builders_are_seeded_and_sized():
    a, b = tiny.tiny_gpt2(11, seed=3), tiny.tiny_gpt2(11, seed=3)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not torch.equal(a.transformer.wte.weight, tiny.tiny_gpt2(11, seed=4).transformer.wte.weight)
    assert a.transformer.wte.weight.shape == (11, 32) and len(a.transformer.h) == 2 and not a.training
    llama = tiny.tiny_llama(11, width=16)
    assert llama.model.embed_tokens.weight.shape == (11, 16) and llama.config.intermediate_size == 32
    logits = llama(torch.tensor([[2, 5, 6]])).logits
    assert logits.shape == (1, 3, 11) and torch.isfinite(logits).all()


@pytest.mark.parametrize(("build", "image_tokens"), [(tiny.tiny_llava, (16 // 4) ** 2), (tiny.tiny_blip2, 4)])
def test_multimodal_builders_take_one_image_token_per_embedding(build, image_tokens):
    tok = tiny.word_tokenizer(["Who is this ?"], extra_special_tokens={"image_token": "<image>"})
    model = build(tok)
    ids = torch.tensor([[2] + [tok.image_token_id] * image_tokens + tok("Who is this ?").input_ids[1:]])
    out = model(pixel_values=torch.randn(1, 3, 16, 16), input_ids=ids, attention_mask=torch.ones_like(ids))
    assert out.logits.shape[:2] == ids.shape and torch.isfinite(out.logits).all()
    with pytest.raises(InvalidInputError, match="no '<image>' token"):
        build(tiny.word_tokenizer(["Who is this ?"]))


def test_colour_squares_carry_their_class_colour():
    images = tiny.colour_squares([0, 1, 2, 3] * 5, seed=0)
    for i, img in enumerate(images):
        pixels = np.asarray(img, dtype=np.float64)
        assert pixels.shape == (20, 20, 3)
        # N(0, 25^2) noise over 400 pixels: the mean is within ~4 standard errors (5) of the colour, clipping aside
        np.testing.assert_allclose(pixels.mean((0, 1)), tiny.COLOURS[tiny.COLOUR_CLASSES[i % 4]], atol=20)
    with pytest.raises(InvalidInputError, match=r"labels must lie in \[0, 4\)"):
        tiny.colour_squares([4], seed=0)


def test_memorise_drives_a_task_loss_down():
    from erasus.tasks.classification import ClassificationTask

    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    batch = (torch.randn(6, 4), torch.tensor([0, 1, 2, 0, 1, 2]))
    task = ClassificationTask()
    with torch.no_grad():
        before = float(task.loss(model, batch))
    out = tiny.memorise(model, batch, task=task, steps=200, lr=0.1, optimizer="adam")
    assert out is model and not model.training
    with torch.no_grad():
        assert float(task.loss(model, batch)) < 0.05 < before
    with pytest.raises(InvalidInputError, match="optimizer must be"):
        tiny.memorise(model, batch, task=task, steps=1, lr=0.1, optimizer="sgd")
