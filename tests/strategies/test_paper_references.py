"""Strategies against their papers' formulas and their official code's schedules, computed independently here
(float64 hand computations, brute force over samples, recorded batch sequences)."""

from __future__ import annotations

import copy

import erasus
import pytest
import torch
from erasus.strategies.base import reinitialize


def _perturbed(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` with every parameter moved far from any initialiser's range (a stand-in for training)."""
    with torch.no_grad():
        for i, p in enumerate(model.parameters()):
            p.add_(5.0 + i)
    return model


def test_reinitialize_leaves_no_trained_parameter_or_running_statistic():
    transformers = pytest.importorskip("transformers")
    cfg = transformers.ViTConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                                 image_size=8, patch_size=4, num_channels=1, num_labels=3)
    torch.manual_seed(0)
    models = {
        # a ViT keeps its position embedding and class token as bare nn.Parameters of ViTEmbeddings
        "vit": transformers.ViTForImageClassification(cfg),
        # MultiheadAttention's in_proj_weight is a bare parameter reset by _reset_parameters
        "encoder_layer": torch.nn.TransformerEncoderLayer(8, 2, 16, batch_first=True),
        "conv_bn": torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU()),
    }
    for name, model in models.items():
        trained = _perturbed(model)
        for m in trained.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.fill_(3.0)
                m.running_var.fill_(7.0)
                m.num_batches_tracked.fill_(11)
        saved = copy.deepcopy(trained.state_dict())
        fresh = reinitialize(trained, seed=0)
        for key, value in fresh.state_dict().items():
            if key.endswith("position_ids"):
                continue  # a constant index table, not learned
            assert not torch.equal(value, saved[key]), (name, key)
        for key, value in trained.state_dict().items():
            assert torch.equal(value, saved[key]), (name, key)  # the caller's model is untouched
        if name == "conv_bn":
            bn = fresh[1]
            assert torch.equal(bn.running_mean, torch.zeros(4)) and torch.equal(bn.running_var, torch.ones(4))
            assert int(bn.num_batches_tracked) == 0
        again = reinitialize(trained, seed=0)
        assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), again.state_dict().values()))


def test_reinitialize_refuses_a_parameter_it_cannot_reset():
    class WithBareParameter(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = torch.nn.Linear(4, 2)
            self.offset = torch.nn.Parameter(torch.zeros(2))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.linear(x) + self.offset

    model = _perturbed(WithBareParameter())
    saved = copy.deepcopy(model.state_dict())
    with pytest.raises(erasus.InvalidInputError, match="offset.*model_factory="):
        reinitialize(model, seed=0)
    assert all(torch.equal(v, saved[k]) for k, v in model.state_dict().items())
    # SISA without a model_factory would train its shard models from these weights: it refuses up front
    x, y = torch.randn(24, 4), torch.randint(0, 2, (24,))
    with pytest.raises(erasus.InvalidInputError, match="offset"):
        erasus.get_strategy("sisa", shards=2, slices=1, epochs_per_slice=1).fit(model=model, train_data=(x, y),
                                                                                progress=False)
