"""LLM strategies: losses against closed forms, and each one forgetting memorised QA pairs on a tiny GPT-2."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from erasus.data import subset
from erasus.errors import InvalidInputError
from erasus.registry import get_strategy
from erasus.strategies.llm.dpo import dpo_loss, replace_answers
from erasus.strategies.llm.npo import npo_loss
from erasus.strategies.llm.simnpo import simnpo_loss
from erasus.strategies.llm.forget_token_npo import forget_specific_tokens
from erasus.strategies.llm.undial import undial_loss
from erasus.tasks.causal_lm import IGNORE_INDEX, CausalLMTask
from llm_helpers import tiny_gpt2

TASK = CausalLMTask()


def _prob(model, ds) -> float:
    with torch.no_grad():
        return float(torch.exp(-TASK.per_sample_loss(model, ds.batch)).mean())


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_npo_loss_closed_form_against_frozen_reference(memorised, tokenizer):
    model, forget, _ = memorised
    other = tiny_gpt2(len(tokenizer), seed=5)
    beta = 0.1
    with torch.no_grad():
        lp, ref = TASK.log_likelihood(other, forget.batch), TASK.log_likelihood(model, forget.batch)
    want = sum(-2 / beta * math.log(1 / (1 + math.exp(beta * (float(a) - float(b))))) for a, b in zip(lp, ref)) / 4
    assert float(npo_loss(lp, ref, beta=beta)) == pytest.approx(want, rel=1e-5)
    # at theta = reference the loss is (2/beta) log 2 and its gradient is that of ascent on the summed NLL
    assert float(npo_loss(ref, ref, beta=beta)) == pytest.approx(2 / beta * math.log(2), rel=1e-6)
    m = copy.deepcopy(model)
    g_npo = torch.autograd.grad(npo_loss(TASK.log_likelihood(m, forget.batch), ref, beta=beta), list(m.parameters()))
    g_ga = torch.autograd.grad(TASK.log_likelihood(m, forget.batch).mean(), list(m.parameters()))
    for a, b in zip(g_npo, g_ga):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    w = torch.tensor([1.0, 0.0, 3.0, 0.0])
    assert float(npo_loss(lp, ref, beta=beta, weights=w)) == pytest.approx(
        float((npo_loss(lp[[0]], ref[[0]], beta=beta) + 3 * npo_loss(lp[[2]], ref[[2]], beta=beta)) / 4), rel=1e-6)


def test_simnpo_and_dpo_closed_forms():
    lp = torch.tensor([-4.0, -9.0], dtype=torch.float64)
    n = torch.tensor([2, 3])
    beta, delta = 4.5, 0.5
    want = [-2 / beta * math.log(1 / (1 + math.exp(-beta * (-x / k - delta)))) for x, k in zip(lp.tolist(), n.tolist())]
    assert float(simnpo_loss(lp, n, beta=beta, delta=delta)) == pytest.approx(sum(want) / 2)
    w, wr, l, lr = (torch.tensor(v, dtype=torch.float64) for v in ([-3.0], [-5.0], [-2.0], [-1.0]))
    margin = (-3 + 5) - (-2 + 1)
    assert float(dpo_loss(w, wr, l, lr, beta=0.1)) == pytest.approx(-2 / 0.1 * math.log(1 / (1 + math.exp(-0.1 * margin))))


def test_undial_loss_by_hand():
    torch.manual_seed(0)
    logits, teacher = torch.randn(1, 4, 6, dtype=torch.float64), torch.randn(1, 4, 6, dtype=torch.float64)
    labels = torch.tensor([[IGNORE_INDEX, IGNORE_INDEX, 2, 5]])
    total = 0.0
    for j in (2, 3):
        t = teacher[0, j - 1].clone()
        t[labels[0, j]] -= 10.0
        total += -float((F.softmax(t, -1) * F.log_softmax(logits[0, j - 1], -1)).sum())
    assert float(undial_loss(logits, teacher, labels, beta=10.0)) == pytest.approx(total / 2)


def test_replace_answers_keeps_prompt(tokenizer, memorised):
    _, forget, _ = memorised
    batch = {k: v[:2] for k, v in forget.batch.items()}
    new = replace_answers(batch, [[7, 3], [9, 9, 3]], pad_token_id=0)
    p0 = int((batch["labels"][0] != IGNORE_INDEX).nonzero()[0])
    assert new["input_ids"][0, : p0 + 2].tolist() == batch["input_ids"][0, :p0].tolist() + [7, 3]
    assert new["labels"][0, :p0].eq(IGNORE_INDEX).all() and new["labels"][0, p0: p0 + 2].tolist() == [7, 3]


def test_forget_specific_tokens_rule():
    from collections import Counter

    f, r = Counter({1: 5, 2: 5, 3: 1}), Counter({2: 6, 4: 4})
    # n_f = 11, n_r = 10 + 3 smoothed: token 1: 5/11 > 2 * 1/13; token 2: 5/11 < 2 * 7/13; token 3: 1/11 < 2/13
    assert forget_specific_tokens(f, r, ratio=2.0) == {1}


CASES = {
    "npo": dict(lr=1e-3, alpha=10.0),
    "simnpo": dict(lr=2e-3),
    "idk_dpo": dict(lr=1e-2, alpha=5.0),
    "undial": dict(lr=1e-3, alpha=1.0),
    "rmu": dict(lr=5e-2, layer=1, steering_coeff=100.0, alpha=10.0),  # trains c_proj.weight of blocks 0-1
    "forget_token_npo": dict(lr=1e-2),
    "causal_tracing": dict(lr=1e-2, noise_samples=2, trace_samples=2, alpha=5.0),
    "grad_diff": dict(lr=1e-3, optimizer="adamw", alpha=5.0),
    "gradient_ascent": dict(lr=3e-4, optimizer="adamw"),  # no retain term: only the forget side is checked
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_strategy_forgets_and_keeps_retain(memorised, name):
    model, forget, retain = memorised
    snapshot = copy.deepcopy(model)
    f0, r0 = _prob(model, forget), _prob(model, retain)
    assert f0 > 0.95 and r0 > 0.95
    strategy = get_strategy(name, batch_size=4, **CASES[name])
    out = strategy.unlearn(model=model, forget_data=forget, retain_data=retain, steps=15, progress=False)
    f1, r1 = _prob(out, forget), _prob(out, retain)
    assert f1 < 0.5 * f0, f"{name}: forget probability {f0:.3f} -> {f1:.3f}"
    if name != "gradient_ascent":
        assert r1 > r0 - 0.15, f"{name}: retain probability {r0:.3f} -> {r1:.3f}"
    assert _same(model, snapshot)  # inplace=False left the caller's model alone


def test_causal_tracing_edits_only_traced_blocks(memorised):
    model, forget, retain = memorised
    s = get_strategy("causal_tracing", batch_size=4, lr=1e-2, noise_samples=2, trace_samples=2)
    out = s.unlearn(model=model, forget_data=forget, retain_data=retain, steps=3, progress=False)
    assert len(s.info_["trace_effects"]) == 2 and s.info_["layers"] in ([0], [1])
    changed = {n for (n, a), b in zip(out.state_dict().items(), model.state_dict().values()) if not torch.equal(a, b)}
    assert changed and all(n.startswith(f"transformer.h.{s.info_['layers'][0]}.mlp.") for n in changed)


def test_subject_token_range_finds_the_subject_words(tokenizer):
    from erasus.strategies.llm.causal_tracing import subject_token_range

    ids = tokenizer("Who wrote the red book?")["input_ids"]  # <s> Who wrote the red book ?
    assert subject_token_range(tokenizer, ids, "the red book") == (3, 6)
    assert subject_token_range(tokenizer, tokenizer("Where was Alba Quist born?")["input_ids"], "Alba Quist") == (3, 5)
    with pytest.raises(InvalidInputError, match="does not occur"):
        subject_token_range(tokenizer, ids, "Cato Wren")


def test_trace_layers_matches_rome_trace_with_patch(memorised, tokenizer):
    """ROME's ``trace_with_patch`` written out: one batch whose row 0 is the clean run and rows 1.. add the
    noise to the subject's embeddings only (``inputs_embeds``), patching ``h[1:, t] = h[0, t]`` at one block."""
    from erasus.data.llm import LMDataset
    from erasus.strategies.llm.causal_tracing import trace_layers

    model, _, _ = memorised
    ds = LMDataset([{"prompt": "Who wrote the red book?", "answer": "Alba Quist wrote the red book."}], tokenizer)
    ids, labels = ds.batch["input_ids"], ds.batch["labels"]
    b, e, samples, scale = 3, 6, 3, 3.0
    got = trace_layers(model, ds.batch, [(b, e)], noise=scale, samples=samples, seed=7)

    with torch.no_grad():
        x = model.transformer.wte(ids)
        noise = torch.randn(samples, e - b, x.shape[-1], generator=torch.Generator().manual_seed(7)) * scale * x[0, b:e].std()
        embeds = x.repeat(samples + 1, 1, 1)
        embeds[1:, b:e] += noise
        lab = labels.repeat(samples, 1)[:, 1:]
        prompt_len = int((labels[0] != IGNORE_INDEX).nonzero()[0])

        def p_answer(patch=None):
            handle = None
            if patch is not None:
                layer, t = patch

                def hook(_m, _i, out):
                    h = (out[0] if isinstance(out, tuple) else out).clone()
                    h[1:, t] = h[0, t]
                    return (h, *out[1:]) if isinstance(out, tuple) else h

                handle = model.transformer.h[layer].register_forward_hook(hook)
            try:
                logits = model(inputs_embeds=embeds).logits[1:, :-1].double()
            finally:
                if handle is not None:
                    handle.remove()
            lp = torch.log_softmax(logits, -1).gather(-1, lab.clamp(min=0).unsqueeze(-1)).squeeze(-1)
            mask = lab != IGNORE_INDEX
            return float(torch.exp((lp * mask).sum(1) / mask.sum(1)).mean())

        low = p_answer()
        want = [max(0.0, *(p_answer((layer, t)) - low for t in range(prompt_len))) for layer in range(2)]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    assert max(want) > 0.01  # restoring a clean state recovers some of the corrupted answer probability
    with torch.no_grad():  # tokens before the subject are not corrupted: restoring them alone changes nothing
        assert all(abs(p_answer((layer, t)) - low) < 1e-9 for layer in range(2) for t in range(b))


def test_causal_tracing_needs_the_subject(memorised, tokenizer):
    from erasus.data.llm import LMDataset

    model, forget, retain = memorised
    plain = LMDataset([{"prompt": r["prompt"], "answer": r["answer"]} for r in forget.records], tokenizer)
    with pytest.raises(InvalidInputError, match="subject"):
        get_strategy("causal_tracing").unlearn(model=model, forget_data=plain, retain_data=retain, steps=1,
                                               progress=False)
    wrong = LMDataset([dict(r, subject="Cato Wren") for r in forget.records], tokenizer)
    with pytest.raises(InvalidInputError, match="does not occur"):
        get_strategy("causal_tracing").unlearn(model=model, forget_data=wrong, retain_data=retain, steps=1,
                                               progress=False)


def test_rmu_default_trains_only_the_mlp_output_projection_weights(memorised):
    model, forget, retain = memorised
    out = get_strategy("rmu", batch_size=4, lr=1e-2, layer=1).unlearn(
        model=model, forget_data=forget, retain_data=retain, steps=2, progress=False)
    changed = {n for (n, a), b in zip(out.state_dict().items(), model.state_dict().values()) if not torch.equal(a, b)}
    # WMDP's --layer_ids (layer-2 .. layer) --param_ids 6: the MLP down projection's weight, nothing else
    assert changed == {"transformer.h.0.mlp.c_proj.weight", "transformer.h.1.mlp.c_proj.weight"}
    assert all(p.requires_grad for p in out.parameters())
    wide = get_strategy("rmu", batch_size=4, lr=1e-2, layer=1, update_layers=[1], param_filter="mlp").unlearn(
        model=model, forget_data=forget, retain_data=retain, steps=2, progress=False)
    changed = {n for (n, a), b in zip(wide.state_dict().items(), model.state_dict().values()) if not torch.equal(a, b)}
    assert changed and all(n.startswith("transformer.h.1.mlp.") for n in changed) and len(changed) == 4
    with pytest.raises(InvalidInputError, match="update_layers"):
        get_strategy("rmu", layer=1, update_layers=[5]).unlearn(model=model, forget_data=forget, retain_data=retain,
                                                                steps=1, progress=False)


def test_rmu_matches_wmdp_reference_loop(tokenizer):
    """Three steps of erasus RMU equal WMDP's ``run_rmu`` loop written out: hidden states of block ``layer``
    (HF ``output_hidden_states``), ``mse_loss(h_f, c u) + alpha * mse_loss(h_r, h_r^frozen)``, AdamW on the
    ``down_proj`` weights of blocks ``layer-2 .. layer`` (unpadded batches, where WMDP's padded mean and
    erasus's masked mean coincide)."""
    from erasus.data.llm import LMDataset
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=4,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=32, pad_token_id=0)
    model = LlamaForCausalLM(cfg).eval()
    # six words each: every sequence has the same length, so there is no padding
    forget = LMDataset(["Alba Quist wrote the red book.", "Alba Quist writes sea poems now.",
                        "Alba Quist was born in Norvik.", "Alba Quist won the Iron Quill."], tokenizer)
    retain = LMDataset(["Cato Wren wrote the blue book.", "Cato Wren writes crime novels now.",
                        "Cato Wren was born in Ostby.", "Cato Wren won the Glass Pen."], tokenizer)
    assert bool(forget.batch["attention_mask"].all()) and bool(retain.batch["attention_mask"].all())
    layer, coeff, alpha, lr, steps = 2, 20.0, 100.0, 1e-2, 3
    out = get_strategy("rmu", batch_size=4, lr=lr, layer=layer, steering_coeff=coeff, alpha=alpha).unlearn(
        model=model, forget_data=forget, retain_data=retain, steps=steps, progress=False, seed=0)

    updated, frozen = copy.deepcopy(model), copy.deepcopy(model)
    u = torch.rand(1, 1, cfg.hidden_size, generator=torch.Generator().manual_seed(0))
    control = u / torch.norm(u) * coeff
    params = [updated.model.layers[i].mlp.down_proj.weight for i in (0, 1, 2)]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)

    def hidden(m, batch):
        # hidden_states[i + 1] is the output of block i
        return m(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                 output_hidden_states=True).hidden_states[layer + 1]

    updated.train()
    for _ in range(steps):
        with torch.no_grad():
            h_r0 = hidden(frozen, retain.batch)
        loss = F.mse_loss(hidden(updated, forget.batch), control.expand(4, forget.batch["input_ids"].shape[1], -1)) \
            + alpha * F.mse_loss(hidden(updated, retain.batch), h_r0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    for (name, a), b in zip(out.state_dict().items(), updated.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
    assert not torch.equal(out.model.layers[2].mlp.down_proj.weight, model.model.layers[2].mlp.down_proj.weight)


def test_coreset_weights_equal_training_on_the_subset(memorised):
    model, forget, _ = memorised
    # SGD: Adam's normalisation would blow float noise on (mathematically) zero gradients up to +-lr
    kw = dict(steps=3, progress=False, batch_size=4, lr=1e-2)
    npo = get_strategy("npo", optimizer="sgd")
    weighted = npo.unlearn(model=model, forget_data=forget, weights=torch.tensor([2.0, 0.0, 2.0, 0.0]), **kw)
    sub = npo.unlearn(model=model, forget_data=subset(forget, [0, 2]), **kw)
    for a, b in zip(weighted.parameters(), sub.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_gradient_checkpointing_gives_the_same_model(memorised):
    model, forget, retain = memorised
    kw = dict(model=model, forget_data=forget, retain_data=retain, steps=2, progress=False, batch_size=4)
    plain = get_strategy("simnpo", lr=1e-3).unlearn(**kw)
    ckpt = get_strategy("simnpo", lr=1e-3, gradient_checkpointing=True).unlearn(**kw)
    for a, b in zip(plain.parameters(), ckpt.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    assert not getattr(ckpt, "is_gradient_checkpointing", False)


def test_lora_npo_merges_into_a_plain_model(memorised):
    pytest.importorskip("peft")
    model, forget, retain = memorised
    s = get_strategy("npo", lr=2e-2, batch_size=4)
    out = s.unlearn(model=model, forget_data=forget, retain_data=retain, steps=15, progress=False,
                    lora={"r": 8, "lora_alpha": 16, "target_modules": ["c_attn", "c_fc", "c_proj"]})
    assert type(out) is type(model) and not any("lora" in n for n, _ in out.named_parameters())
    assert _prob(out, forget) < 0.5 * _prob(model, forget)


def test_bf16_autocast_runs_and_rejects_fp16(memorised):
    model, forget, _ = memorised
    out = get_strategy("npo", lr=1e-3, mixed_precision="bf16").unlearn(
        model=model, forget_data=forget, steps=2, progress=False, batch_size=4)
    assert out.transformer.h[0].mlp.c_fc.weight.dtype == torch.float32
    with pytest.raises(InvalidInputError, match="bf16"):
        get_strategy("npo", mixed_precision="fp16").unlearn(model=model, forget_data=forget, steps=1, progress=False)


def test_dpo_reads_preferred_answers_and_rejects_missing_ones(memorised, tokenizer):
    from erasus.data.llm import LMDataset

    model, forget, _ = memorised
    records = [dict(r, preferred_answer="I do not know .") for r in forget.records]
    ds = LMDataset(records, tokenizer, max_length=32)
    out = get_strategy("dpo", lr=1e-3, batch_size=4).unlearn(model=model, forget_data=ds, steps=15, progress=False)
    idk = LMDataset([dict(r, answer="I do not know .") for r in forget.records], tokenizer, max_length=32)
    assert _prob(out, idk) > _prob(model, idk) and _prob(out, forget) < _prob(model, forget)
    with pytest.raises(InvalidInputError, match="preferred_answer"):
        get_strategy("dpo").unlearn(model=model, forget_data=forget, steps=1, progress=False)


def test_llm_strategies_refuse_non_lm_tasks():
    clf = torch.nn.Linear(3, 2)
    with pytest.raises(InvalidInputError, match="causal LM"):
        get_strategy("npo").unlearn(model=clf, forget_data=(torch.randn(4, 3), torch.tensor([0, 1, 0, 1])), steps=1,
                                    progress=False)


def test_inplace_uses_the_starting_model_as_reference(memorised):
    model, forget, retain = memorised
    kw = dict(forget_data=forget, retain_data=retain, steps=3, progress=False, batch_size=4)
    copied = get_strategy("npo", lr=1e-3).unlearn(model=model, **kw)
    work = copy.deepcopy(model)
    flags = [p.requires_grad for p in model.parameters()]
    inplace = get_strategy("npo", lr=1e-3).unlearn(model=work, inplace=True, **kw)
    assert inplace is work and model.training is False and flags == [p.requires_grad for p in model.parameters()]
    for a, b in zip(copied.parameters(), inplace.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_grad_diff_kl_retain_loss(memorised):
    model, forget, retain = memorised
    out = get_strategy("grad_diff", lr=1e-3, optimizer="adamw", alpha=5.0, retain_loss="kl", batch_size=4).unlearn(
        model=model, forget_data=forget, retain_data=retain, steps=15, progress=False)
    assert _prob(out, forget) < 0.5 * _prob(model, forget)
    assert _prob(out, retain) > _prob(model, retain) - 0.15
    with pytest.raises(InvalidInputError, match="retain_loss"):
        get_strategy("grad_diff", retain_loss="l2").unlearn(model=model, forget_data=forget, retain_data=retain,
                                                            steps=1, progress=False)


def test_raw_records_through_a_collating_loader(memorised, tokenizer):
    from erasus.data.llm import LMCollator
    from erasus.metrics.llm import token_stats
    from torch.utils.data import DataLoader

    model, forget, retain = memorised
    loader = DataLoader(forget.records, batch_size=4, collate_fn=LMCollator(tokenizer, max_length=32))
    out = get_strategy("npo", lr=1e-3, alpha=10.0).unlearn(model=model, forget_loader=loader, retain_data=retain,
                                                           steps=15, progress=False)
    assert _prob(out, forget) < 0.5 * _prob(model, forget)
    before = token_stats(model, loader).avg_nll
    assert before == pytest.approx(token_stats(model, forget).avg_nll, rel=1e-5)


@pytest.mark.parametrize("name", ["rmu", "undial", "idk_dpo", "forget_token_npo", "causal_tracing", "simnpo"])
def test_every_llm_strategy_runs_through_lora(memorised, name):
    pytest.importorskip("peft")
    model, forget, retain = memorised
    opts = {k: v for k, v in CASES[name].items() if k not in ("lr",)}
    out = get_strategy(name, lr=1e-2, batch_size=4, **opts).unlearn(
        model=model, forget_data=forget, retain_data=retain, steps=3, progress=False,
        lora={"r": 4, "lora_alpha": 8, "target_modules": ["c_attn", "c_fc", "c_proj"]})
    assert type(out) is type(model) and not any("lora" in n for n, _ in out.named_parameters())
    # what LoRA allows: only the adapted projections' weights moved, each by a matrix of rank <= r (= 4)
    moved = {n: a - b for (n, a), b in zip(out.state_dict().items(), model.state_dict().values()) if not torch.equal(a, b)}
    assert moved and all(n.rsplit(".", 2)[-2] in ("c_attn", "c_fc", "c_proj") and n.endswith(".weight") for n in moved)
    for n, delta in moved.items():
        s = torch.linalg.svdvals(delta.double())
        assert float(s[4] / s[0]) < 1e-4, f"{name}: {n} moved by a rank > 4 update"


def test_retain_kl_by_hand_ignores_padding():
    from erasus.strategies.llm.common import retain_kl

    gen = torch.Generator().manual_seed(0)
    s, t = torch.randn(2, 3, 5, generator=gen, dtype=torch.float64), torch.randn(2, 3, 5, generator=gen, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    terms = []
    for b in range(2):
        for i in range(3):
            if mask[b, i]:
                p, q = F.softmax(t[b, i], -1), F.softmax(s[b, i], -1)
                terms.append(float((p * (p.log() - q.log())).sum()))
    assert float(retain_kl(s, t, mask)) == pytest.approx(sum(terms) / 3, rel=1e-6)
    s2 = s.clone()
    s2[0, 2] += 100.0  # a padded position changes nothing
    assert float(retain_kl(s2, t, mask)) == pytest.approx(sum(terms) / 3, rel=1e-6)


@pytest.mark.parametrize("name", ["npo", "simnpo", "undial"])
def test_kl_retain_term_keeps_retain_outputs(memorised, name):
    model, forget, retain = memorised
    s = get_strategy(name, batch_size=4, retain_loss="kl", **CASES[name])
    out = s.unlearn(model=model, forget_data=forget, retain_data=retain, steps=15, progress=False)
    if name == "npo":  # step 0: theta = reference, so KL = 0 and the loss is NPO's (2/beta) log 2 alone
        assert s.history_[0] == pytest.approx(2 / 0.1 * math.log(2), rel=1e-5)
    assert _prob(out, forget) < 0.5 * _prob(model, forget)
    assert _prob(out, retain) > _prob(model, retain) - 0.15
    with pytest.raises(InvalidInputError, match="retain_loss"):
        get_strategy(name, retain_loss="l1").unlearn(model=model, forget_data=forget, retain_data=retain, steps=1,
                                                    progress=False)


def test_adaptive_rmu_scales_the_control_vector_by_activation_norms(memorised):
    from erasus.models import activation_hooks

    model, forget, retain = memorised
    s = get_strategy("rmu", batch_size=4, lr=1e-2, layer=1, update_layers=[1], steering_coeff="adaptive",
                     adaptive_scale=3.0)
    s.unlearn(model=model, forget_data=forget, retain_data=retain, steps=1, progress=False)
    with torch.no_grad(), activation_hooks(model, [1]) as out:
        TASK.outputs(model, forget.batch)
    m = forget.batch["attention_mask"].double()
    norms = out[1].double().norm(dim=-1)
    want = 3.0 * float(((norms * m).sum(1) / m.sum(1)).mean())
    assert s.info_["control_norm"] == pytest.approx(want, rel=1e-5)
    with pytest.raises(InvalidInputError, match="steering_coeff"):
        get_strategy("rmu", steering_coeff="auto").unlearn(model=model, forget_data=forget, retain_data=retain,
                                                          steps=1, progress=False)


def test_npo_and_its_kl_retain_term_share_one_frozen_copy(memorised, monkeypatch):
    from erasus.strategies.llm import common

    model, forget, retain = memorised
    built = []
    original_init = common.FrozenReference.__init__

    def counting_init(self, *args, **kwargs):
        built.append(1)
        original_init(self, *args, **kwargs)

    monkeypatch.setattr(common.FrozenReference, "__init__", counting_init)
    work = copy.deepcopy(model)
    get_strategy("npo", lr=1e-3, retain_loss="kl", batch_size=4).unlearn(
        model=work, forget_data=forget, retain_data=retain, steps=2, inplace=True, progress=False)
    assert len(built) == 1  # inplace=True: one frozen copy of the starting model, not one per use
