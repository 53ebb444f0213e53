"""Per-sample gradient features vs a per-sample loop of autograd.grad (the independent reference)."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import erasus.features as feats
from erasus.errors import InvalidInputError
from erasus.kernels import reference as R


def _loop_grads(model, loss_of, n, params=None):
    """(n, D) per-sample gradients, one autograd.grad per sample, in named_parameters order."""
    params = list(model.parameters()) if params is None else params
    rows = []
    for i in range(n):
        grads = torch.autograd.grad(loss_of(i), params, allow_unused=True)
        rows.append(torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1) for g, p in zip(grads, params)]))
    return torch.stack(rows).double()


def _dense_projection(grads, proj_dim, seed, kind="rademacher"):
    r = R.jl_matrix(seed, range(grads.shape[1]), proj_dim, kind=kind).double()
    return grads @ r / math.sqrt(proj_dim)


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(7, 16), nn.ReLU(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 4))


class _CNN(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.conv = nn.Conv2d(2, 4, 3, padding=1, stride=2)
        self.norm = nn.GroupNorm(2, 4)  # not hookable: goes through torch.func
        self.head = nn.Linear(4 * 3 * 3, 5)

    def forward(self, x):
        return self.head(torch.relu(self.norm(self.conv(x))).flatten(1))


class _EmbedBag(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(2)
        self.emb = nn.Embedding(11, 6, padding_idx=0)
        self.out = nn.Linear(6, 3)

    def forward(self, ids):
        return self.out(self.emb(ids).mean(1))


def _classification_case(name):
    g = torch.Generator().manual_seed(3)
    if name == "mlp":
        model, x = _mlp(), torch.randn(9, 7, generator=g)
    elif name == "cnn":
        model, x = _CNN(), torch.randn(9, 2, 6, 6, generator=g)
    else:
        model, x = _EmbedBag(), torch.randint(0, 11, (9, 5), generator=g)
    y = torch.randint(0, 3, (9,), generator=g)
    return model, x, y


@pytest.mark.parametrize("name", ["mlp", "cnn", "embed"])
@pytest.mark.parametrize("method", ["auto", "vmap", "loop"])
@pytest.mark.parametrize("kind", ["rademacher", "gaussian"])
def test_projected_gradients_equal_projected_autograd_loop(name, method, kind):
    model, x, y = _classification_case(name)
    expected = _dense_projection(
        _loop_grads(model, lambda i: F.cross_entropy(model(x[i:i + 1]), y[i:i + 1]), len(x)), 32, 5, kind)
    got = feats.per_sample_gradients(model, (x, y), proj_dim=32, projection=kind, seed=5, batch_size=4,
                                     method=method, progress=False)
    assert got.dtype == torch.float32 and got.shape == (9, 32) and got.device.type == "cpu"
    torch.testing.assert_close(got.double(), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["mlp", "cnn", "embed"])
def test_grad_norms_equal_autograd_loop(name):
    model, x, y = _classification_case(name)
    expected = _loop_grads(model, lambda i: F.cross_entropy(model(x[i:i + 1]), y[i:i + 1]), len(x)).norm(dim=1)
    for method in ("auto", "vmap"):
        got = feats.per_sample_grad_norms(model, (x, y), batch_size=4, method=method, progress=False)
        torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-6)


def test_hooks_only_method_matches_and_refuses_uncovered_parameters():
    model, x, y = _classification_case("mlp")
    a = feats.per_sample_gradients(model, (x, y), proj_dim=8, method="hooks", progress=False)
    b = feats.per_sample_gradients(model, (x, y), proj_dim=8, method="vmap", progress=False)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    cnn, x, y = _classification_case("cnn")
    with pytest.raises(InvalidInputError, match="norm"):
        feats.per_sample_gradients(cnn, (x, y), proj_dim=8, method="hooks", progress=False)


def test_tiny_chunks_and_batch_size_do_not_change_the_result():
    model, x, y = _classification_case("cnn")
    whole = feats.per_sample_gradients(model, (x, y), proj_dim=16, batch_size=9, progress=False)
    chunked = feats.per_sample_gradients(model, (x, y), proj_dim=16, batch_size=2, max_grad_entries=20,
                                         progress=False)
    torch.testing.assert_close(chunked, whole, rtol=1e-5, atol=1e-6)


def test_layers_restrict_the_gradient():
    model, x, y = _classification_case("mlp")
    last = [model[4].weight, model[4].bias]
    expected = _dense_projection(
        _loop_grads(model, lambda i: F.cross_entropy(model(x[i:i + 1]), y[i:i + 1]), len(x), last), 16, 0)
    got = feats.per_sample_gradients(model, (x, y), proj_dim=16, layers=["4"], progress=False)
    torch.testing.assert_close(got.double(), expected, rtol=1e-4, atol=1e-5)


def test_kronecker_equals_layerwise_vec_grad_times_kron():
    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(6, 10, bias=False), nn.Tanh(), nn.Linear(10, 3, bias=False))
    x, y = torch.randn(5, 6), torch.randint(0, 3, (5,))
    proj_dim, seed = 24, 9
    grads = _loop_grads(model, lambda i: F.cross_entropy(model(x[i:i + 1]), y[i:i + 1]), 5)
    blocks, off = [], 0
    for block, w in enumerate([model[0].weight, model[2].weight]):
        d_out, d_in = w.shape
        r_out, r_in = 3, 4  # 12 = 3 x 4 columns per layer (divisor of 12 closest to sqrt(12))
        s = R.derive_seed(seed, block + 2)
        p_in = R.jl_matrix(R.derive_seed(s, 0), range(d_in), r_in).double() / math.sqrt(r_in)
        p_out = R.jl_matrix(R.derive_seed(s, 1), range(d_out), r_out).double() / math.sqrt(r_out)
        blocks.append(grads[:, off:off + w.numel()] @ torch.kron(p_out, p_in))
        off += w.numel()
    got = feats.per_sample_gradients(model, (x, y), proj_dim=proj_dim, projection="kronecker", seed=seed,
                                     progress=False)
    torch.testing.assert_close(got.double(), torch.cat(blocks, 1), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name,weights", [("cnn", ["conv.weight", "head.weight"]), ("embed", ["emb.weight", "out.weight"])])
def test_kronecker_layout_on_conv_embedding_and_dense_rest(name, weights):
    # documented layout: one LoGra block per hooked weight (in parameter order), then one dense Rademacher
    # block (seed derive_seed(seed, 1)) over the remaining parameters (biases, GroupNorm)
    model, x, y = _classification_case(name)
    grads = _loop_grads(model, lambda i: F.cross_entropy(model(x[i:i + 1]), y[i:i + 1]), len(x))
    got = feats.per_sample_gradients(model, (x, y), proj_dim=36, projection="kronecker", seed=3,
                                     batch_size=4, progress=False)
    torch.testing.assert_close(got.double(), _kron_layout(model, grads, weights, 3, 12), rtol=1e-4, atol=1e-5)


def _kron_layout(model, grads, weights, seed, block):
    """Expected kronecker features; blocks of 12 = 3 x 4 columns."""
    named = list(model.named_parameters())
    offsets, off = {}, 0
    for n, p in named:
        offsets[n] = (off, off + p.numel())
        off += p.numel()
    cols = []
    for b, wname in enumerate(weights):
        w = dict(named)[wname]
        rows, width = w.shape[0], w[0].numel()
        s = R.derive_seed(seed, b + 2)
        p_in = R.jl_matrix(R.derive_seed(s, 0), range(width), 4).double() / 2.0
        p_out = R.jl_matrix(R.derive_seed(s, 1), range(rows), 3).double() / math.sqrt(3)
        lo, hi = offsets[wname]
        cols.append(grads[:, lo:hi] @ torch.kron(p_out, p_in))
    rest = torch.cat([grads[:, slice(*offsets[n])] for n, _ in named if n not in weights], 1)
    cols.append(_dense_projection(rest, block, R.derive_seed(seed, 1)))
    return torch.cat(cols, 1)


def test_kronecker_keeps_squared_norms_in_expectation():
    # E||vec(G) kron(P_out, P_in)||^2 = ||G||_F^2; a single draw of a rank-one G varies by ~sqrt(4/r), so
    # average over samples and seeds
    torch.manual_seed(5)
    model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 8))
    x, y = torch.randn(12, 32), torch.randint(0, 8, (12,))
    grads = _loop_grads(model, lambda i: F.cross_entropy(model(x[i:i + 1]), y[i:i + 1]), 12)
    ratios = []
    for seed in range(4):
        phi = feats.per_sample_gradients(model, (x, y), proj_dim=2048, projection="kronecker", seed=seed,
                                         progress=False)
        ratios.append(phi.double().norm(dim=1) ** 2 / grads.norm(dim=1) ** 2)
    assert abs(torch.cat(ratios).mean().item() - 1) < 0.2


def test_caller_model_is_left_as_it_was():
    model, x, y = _classification_case("mlp")
    model.train()
    model[0].weight.requires_grad_(False)
    before = [p.detach().clone() for p in model.parameters()]
    feats.per_sample_gradients(model, (x, y), proj_dim=8, layers=["0", "2"], progress=False)
    assert model.training and not model[0].weight.requires_grad
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_bad_arguments_raise_clear_errors():
    model, x, y = _classification_case("mlp")
    with pytest.raises(InvalidInputError, match="projection"):
        feats.per_sample_gradients(model, (x, y), projection="sparse", progress=False)
    with pytest.raises(InvalidInputError, match="not module or parameter names"):
        feats.per_sample_gradients(model, (x, y), layers=["nope"], progress=False)
    with pytest.raises(InvalidInputError, match="proj_dim"):
        feats.per_sample_gradients(model, (x, y), proj_dim=0, progress=False)
    with pytest.raises(InvalidInputError, match="empty"):
        feats.per_sample_gradients(model, (x[:0], y[:0]), progress=False)


# ------------------------------------------------------------------------------------------- GPT-2

def _gpt2_case():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(6)
    cfg = transformers.GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=64, n_positions=16)
    model = transformers.GPT2LMHeadModel(cfg).eval()  # features are taken in eval mode (no dropout)
    g = torch.Generator().manual_seed(7)
    samples = []
    for i in range(5):
        ids = torch.randint(0, 64, (8,), generator=g)
        mask = torch.ones(8, dtype=torch.long)
        if i == 1:
            mask[6:] = 0  # right padding
        labels = ids.clone()
        labels[:3] = -100  # prompt tokens
        labels[mask == 0] = -100
        samples.append({"input_ids": ids, "attention_mask": mask, "labels": labels})
    return model, samples


def _gpt2_loss(model, s):
    logits = model(input_ids=s["input_ids"][None], attention_mask=s["attention_mask"][None]).logits[0]
    labels = s["labels"]
    keep = labels[1:] != -100
    return F.cross_entropy(logits[:-1][keep], labels[1:][keep])


def test_tiny_gpt2_gradients_and_norms_match_autograd_loop():
    model, samples = _gpt2_case()
    params = [p for _, p in model.named_parameters()]
    grads = _loop_grads(model, lambda i: _gpt2_loss(model, samples[i]), len(samples), params)
    got = feats.per_sample_gradients(model, samples, proj_dim=32, seed=1, batch_size=3, progress=False)
    torch.testing.assert_close(got.double(), _dense_projection(grads, 32, 1), rtol=1e-4, atol=1e-5)
    norms = feats.per_sample_grad_norms(model, samples, batch_size=3, progress=False)
    torch.testing.assert_close(norms.double(), grads.norm(dim=1), rtol=1e-5, atol=1e-6)
    # LoGra blocks: the tied wte / lm_head weight sums its embedding and linear uses in one block
    weights = ["transformer.wte.weight", "transformer.h.0.attn.c_attn.weight", "transformer.h.0.attn.c_proj.weight",
               "transformer.h.0.mlp.c_fc.weight", "transformer.h.0.mlp.c_proj.weight"]
    kron = feats.per_sample_gradients(model, samples, proj_dim=72, projection="kronecker", seed=2, batch_size=3,
                                      progress=False)
    torch.testing.assert_close(kron.double(), _kron_layout(model, grads, weights, 2, 12), rtol=1e-4, atol=1e-5)


def test_tied_gpt2_norms_with_tiny_memory_budget():
    model, samples = _gpt2_case()
    params = [p for _, p in model.named_parameters()]
    grads = _loop_grads(model, lambda i: _gpt2_loss(model, samples[i]), len(samples), params)
    norms = feats.per_sample_grad_norms(model, samples, batch_size=5, max_grad_entries=3000, progress=False)
    torch.testing.assert_close(norms.double(), grads.norm(dim=1), rtol=1e-5, atol=1e-6)
