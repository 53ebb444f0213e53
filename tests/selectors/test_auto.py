import erasus
import numpy as np
import pytest
import torch
from erasus.errors import InvalidInputError
from erasus.selectors.auto import choose_selector


@pytest.fixture
def emb():
    return np.random.default_rng(0).normal(size=(100, 6)), np.arange(100) % 3


def _same(a, b):
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_array_equal(a.weights, b.weights)


def test_auto_follows_the_measured_rule_and_runs_its_choice(emb):
    x, y = emb
    small = erasus.select(x, 5, method="auto", labels=y, seed=2)
    assert small.metadata["auto"]["choice"] == "moderate" and small.method == "auto"
    assert "ratio 0.050" in small.metadata["auto"]["reason"]
    _same(small, erasus.select(x, 5, method="moderate", labels=y, seed=2))
    large = erasus.select(x, 30, method="auto", seed=2)
    assert large.metadata["auto"]["choice"] == "random"
    _same(large, erasus.select(x, 30, method="random", seed=2))
    everything = erasus.select(x, 100, method="auto")
    assert everything.metadata["auto"]["choice"] == "full" and len(everything) == 100


def test_auto_direction_objective(emb):
    z, y = emb
    sel = erasus.select(z, 10, method="auto", objective="direction", feature_kind="logits", labels=y)
    assert sel.metadata["auto"]["choice"] == "el2n"
    _same(sel, erasus.select(z, 10, method="el2n", labels=y))
    sel = erasus.select(z, 10, method="auto", objective="direction", feature_kind="logits")
    assert sel.metadata["auto"]["choice"] == "uncertainty"
    _same(sel, erasus.select(z, 10, method="uncertainty", measure="entropy"))
    fallback = erasus.select(z, 10, method="auto", objective="direction", labels=y)  # embeddings only
    assert fallback.metadata["auto"]["choice"] == "random" and "needs logits" in fallback.metadata["auto"]["reason"]


def test_auto_with_a_model_computes_the_features_it_needs():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    x, y = torch.randn(60, 4), torch.randint(0, 3, (60,))
    sel = erasus.get_selector("auto").select(4, model=model, data=(x, y))
    with torch.no_grad():
        emb = model[1](model[0](x))
    assert sel.metadata["auto"]["choice"] == "moderate"
    _same(sel, erasus.select(emb, 4, method="moderate", labels=y))
    sel = erasus.get_selector("auto", objective="direction").select(4, model=model, data=(x, y))
    assert sel.metadata["auto"]["choice"] == "el2n"
    _same(sel, erasus.get_selector("el2n").select(4, model=model, data=(x, y)))


def test_choose_selector_low_budget_and_text():
    everything = frozenset({"embeddings", "logits", "gradients", "token_log_probs"})
    name, _, _, reason = choose_selector(n=500_000, k=1000, d=None, modality="classification", budget="low",
                                         available=everything)
    assert name == "random" and "low budget" in reason
    name, opts, kind, _ = choose_selector(n=100, k=5, d=None, modality="text", objective="direction",
                                          available=everything)
    assert (name, opts["keep"], kind) == ("min_k", "lowest", "token_log_probs")


def test_auto_errors(emb):
    with pytest.raises(InvalidInputError, match="budget"):
        erasus.get_selector("auto", budget="infinite")
    with pytest.raises(InvalidInputError, match="objective"):
        erasus.get_selector("auto", objective="speed")
    with pytest.raises(InvalidInputError, match="feature_kind"):
        erasus.get_selector("auto", feature_kind="pixels")
    with pytest.raises(InvalidInputError, match="needs features"):
        erasus.get_selector("auto").select(3)


@pytest.mark.parametrize("method", ["el2n", "moderate", "influence", "gradmatch", "glister", "voting", "auto",
                                    "data_shapley", "representer"])
def test_selections_serialise_to_json(emb, method):
    import json

    from erasus import Selection

    x, y = emb
    opts = {"selectors": ["el2n", "moderate"]} if method == "voting" else {}
    sel = erasus.select(x[:30, :3], 4, method=method, labels=y[:30], **opts)
    back = Selection.from_dict(json.loads(json.dumps(sel.to_dict())))
    np.testing.assert_array_equal(back.indices, sel.indices)
    assert back.metadata.keys() == sel.metadata.keys()
