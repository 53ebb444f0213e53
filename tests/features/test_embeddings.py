"""Hook-based embeddings vs direct forward computations."""

import pytest
import torch
from torch import nn

import erasus.features as feats
from erasus.errors import InvalidInputError


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 12), nn.ReLU(), nn.Linear(12, 8), nn.Tanh(), nn.Linear(8, 3))


def test_penultimate_features_are_the_classifier_input():
    model = _mlp()
    x, y = torch.randn(10, 5), torch.randint(0, 3, (10,))
    got = feats.embeddings(model, (x, y), batch_size=3, progress=False)
    with torch.no_grad():
        expected = model[:4](x)
    torch.testing.assert_close(got, expected)


def test_named_layer_output_and_unlabelled_data():
    model = _mlp()
    x = torch.randn(7, 5)
    got = feats.embeddings(model, x, layer="1", batch_size=4, progress=False)
    with torch.no_grad():
        expected = model[:2](x)
    torch.testing.assert_close(got, expected)
    with pytest.raises(InvalidInputError, match="not a module"):
        feats.embeddings(model, x, layer="nope", progress=False)


def test_causal_lm_hidden_states_are_mean_pooled_over_the_attention_mask():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(1)
    cfg = transformers.GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=64, n_positions=16)
    model = transformers.GPT2LMHeadModel(cfg).eval()
    ids = torch.randint(0, 64, (3, 6))
    mask = torch.tensor([[1] * 6, [1] * 4 + [0] * 2, [1] * 6])
    samples = [{"input_ids": ids[i], "attention_mask": mask[i], "labels": ids[i]} for i in range(3)]
    got = feats.embeddings(model, samples, batch_size=2, progress=False)
    with torch.no_grad():
        hidden = model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[-1]
    expected = torch.stack([hidden[i, : int(mask[i].sum())].mean(0) for i in range(3)])
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
