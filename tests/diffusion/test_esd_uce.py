"""ESD and UCE on the tiny pipeline: ESD variants touch only their parameter sets; UCE's closed form against a
float64 numpy computation of the paper's Eq. 7, its erased keys/values map to the guide's, preserved ones stay."""

import numpy as np
import pytest
import torch
from diffusion_helpers import FORGET, RETAIN, assert_same_state, state_of

import erasus
from erasus.errors import ErasusTypeError, InvalidInputError, NonFiniteError
from erasus.models import StableDiffusionWrapper
from erasus.strategies.diffusion.uce import concept_embeddings

FAST = {"num_inference_steps": 3, "progress": False}


def _official_esd_set(wrapper, variant):
    """get_esd_trainable_parameters of rohitgandikota/erasing esd_sd.py, on module class names and paths."""
    names = []
    for name, module in wrapper.unet.named_modules():
        if module.__class__.__name__ not in ("Linear", "Conv2d"):
            continue
        keep = {"x": "attn2" in name, "u": "attn2" not in name, "all": True,
                "x_strict": "attn2.to_k" in name or "attn2.to_v" in name}[variant]
        if keep:
            names += [f"unet.{name}.{n}" for n, _ in module.named_parameters()]
    return set(names)


@pytest.mark.parametrize("variant", ["x", "x_strict", "u", "all"])
def test_esd_variant_changes_only_its_parameter_set(tiny_pipe, variant):
    caller = state_of(tiny_pipe.unet)
    wrapper = StableDiffusionWrapper(tiny_pipe)
    out = erasus.get_strategy("esd", variant=variant).unlearn(model=wrapper, forget_data=FORGET, steps=2, **FAST)
    assert isinstance(out, StableDiffusionWrapper) and out is not wrapper
    allowed = _official_esd_set(wrapper, variant)
    before, after = dict(wrapper.named_parameters()), dict(out.named_parameters())
    changed = {n for n in before if not torch.equal(before[n], after[n])}
    assert changed and changed <= allowed, sorted(changed - allowed)[:3]
    assert len(changed) >= len(allowed) // 2  # Adam moves (almost) every trained tensor
    for name in set(before) - allowed:
        assert torch.equal(before[name], after[name]), name
    assert_same_state(state_of(tiny_pipe.unet), caller)  # the caller's pipeline is untouched
    assert all(p.requires_grad == q.requires_grad for p, q in zip(wrapper.parameters(), out.parameters()))


def test_esd_accepts_the_pipeline_itself(tiny_pipe):
    caller = state_of(tiny_pipe.unet)
    out = erasus.get_strategy("esd").unlearn(model=tiny_pipe, forget_data=FORGET, steps=1, **FAST)
    assert isinstance(out.unet, torch.nn.Module)
    assert_same_state(state_of(tiny_pipe.unet), caller)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"forget_data": []}, InvalidInputError, "empty"),
    ({"forget_data": FORGET, "steps": 0}, InvalidInputError, "steps"),
    ({"forget_data": FORGET, "variant": "z"}, InvalidInputError, "variant"),
    ({"forget_data": [""]}, InvalidInputError, "empty"),
    ({"forget_data": FORGET, "num_inference_steps": 0}, InvalidInputError, "num_inference_steps"),
    ({"forget_data": FORGET, "negative_guidance": float("nan")}, InvalidInputError, "negative_guidance"),
])
def test_esd_refuses_bad_input_before_work(wrapper, kwargs, error, match):
    before = state_of(wrapper)
    with pytest.raises(error, match=match):
        erasus.get_strategy("esd").unlearn(model=wrapper, progress=False, **kwargs)
    assert_same_state(state_of(wrapper), before)


def test_a_diverging_inplace_run_restores_the_model(wrapper):
    before = state_of(wrapper)
    with pytest.raises(NonFiniteError):
        erasus.get_strategy("esd", variant="all", lr=1e30).unlearn(model=wrapper, forget_data=FORGET, steps=5,
                                                                    inplace=True, **FAST)
    assert_same_state(state_of(wrapper), before)
    assert all(p.grad is None for p in wrapper.parameters())


def test_diffusion_strategies_refuse_other_models():
    with pytest.raises(ErasusTypeError, match="diffusion"):
        erasus.get_strategy("esd").unlearn(model=torch.nn.Linear(2, 2), forget_data=FORGET, steps=1)
    with pytest.raises(ErasusTypeError, match="diffusion"):
        erasus.get_strategy("uce").unlearn(model=torch.nn.Linear(2, 2), forget_data=FORGET)


def _uce_numpy(w, c_e, c_g, c_p, lamb, s_e=1.0, s_p=1.0, weights=None):
    w, c_e, c_g, c_p = (np.asarray(a, dtype=np.float64) for a in (w, c_e, c_g, c_p))
    mat1, mat2 = lamb * w, lamb * np.eye(w.shape[1])
    for e, g, we in zip(c_e, c_g, np.ones(len(c_e)) if weights is None else weights):
        mat1 += s_e * we * np.outer(w @ g, e)
        mat2 += s_e * we * np.outer(e, e)
    for p in c_p:
        mat1 += s_p * np.outer(w @ p, p)
        mat2 += s_p * np.outer(p, p)
    return mat1 @ np.linalg.inv(mat2)


def _last_token_embedding(wrapper, prompt):
    ids = wrapper.tokenizer(prompt, padding="max_length", max_length=wrapper.tokenizer.model_max_length,
                            return_tensors="pt")
    last = int(ids["attention_mask"].sum()) - 2
    with torch.no_grad():
        return wrapper.text_encoder(ids["input_ids"])[0][0, last].double().numpy()


def test_uce_matches_the_closed_form_and_touches_only_kv(wrapper):
    before = {n: p.detach().clone() for n, p in wrapper.named_parameters()}
    out = erasus.get_strategy("uce").unlearn(model=wrapper, forget_data=FORGET, retain_data=RETAIN)
    c_e = np.stack([_last_token_embedding(wrapper, p) for p in FORGET])
    c_g = np.stack([_last_token_embedding(wrapper, "")])
    c_p = np.stack([_last_token_embedding(wrapper, p) for p in RETAIN])
    np.testing.assert_allclose(concept_embeddings(wrapper, FORGET).double().numpy(), c_e, rtol=1e-6, atol=1e-6)
    kv = set(wrapper.named_parameter_groups()["cross_attn_kv"])
    after = dict(out.named_parameters())
    for name, old in before.items():
        if name not in kv:
            assert torch.equal(old, after[name]), name
            continue
        expected = _uce_numpy(old.numpy(), c_e, c_g, c_p, lamb=0.5)
        np.testing.assert_allclose(after[name].detach().double().numpy(), expected, rtol=1e-4, atol=1e-5)
        w_new, w_old = after[name].detach().double().numpy(), old.double().numpy()
        # the erased concept's key/value moves to the guide's ...
        target = w_old @ c_g[0]
        assert np.linalg.norm(w_new @ c_e[0] - target) < 0.25 * np.linalg.norm(w_old @ c_e[0] - target)
        # ... while the preserved concepts' keys/values barely move
        for p in c_p:
            assert np.linalg.norm(w_new @ p - w_old @ p) < 0.25 * np.linalg.norm(w_old @ c_e[0] - target)
    assert all(torch.equal(p, before[n]) for n, p in wrapper.named_parameters())  # the input is untouched


def test_uce_without_preserve_maps_the_concept_to_the_guide(wrapper):
    out = erasus.get_strategy("uce", lamb=1e-3).unlearn(model=wrapper, forget_data=FORGET, guide="a photo of a shirt")
    c_e = _last_token_embedding(wrapper, FORGET[0])
    c_g = _last_token_embedding(wrapper, "a photo of a shirt")
    old, new = dict(wrapper.named_parameters()), dict(out.named_parameters())
    for name in wrapper.named_parameter_groups()["cross_attn_kv"]:
        w_old, w_new = old[name].detach().double().numpy(), new[name].detach().double().numpy()
        np.testing.assert_allclose(w_new @ c_e, w_old @ c_g, rtol=1e-3, atol=1e-3)


def test_uce_coreset_weights_scale_the_erase_terms(wrapper):
    prompts = ["a photo of a dress", "a photo of a coat"]
    out = erasus.get_strategy("uce").unlearn(model=wrapper, forget_data=prompts, weights=torch.tensor([3.0, 1.0]))
    c_e = np.stack([_last_token_embedding(wrapper, p) for p in prompts])
    c_g = np.stack([_last_token_embedding(wrapper, "")] * 2)
    old, new = dict(wrapper.named_parameters()), dict(out.named_parameters())
    for name in wrapper.named_parameter_groups()["cross_attn_kv"]:
        w = old[name].detach().double().numpy()
        # weights normalised to mean 1: (1.5, 0.5)
        expected = _uce_numpy(w, c_e, c_g, np.zeros((0, w.shape[1])), lamb=0.5, weights=[1.5, 0.5])
        np.testing.assert_allclose(new[name].detach().double().numpy(), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("options, match", [({"lamb": 0.0}, "lamb"), ({"guide": ["a", "b"]}, "guide"),
                                            ({"preserve": "cat"}, "preserve"),
                                            ({"token_span": "all"}, "token_span")])
def test_uce_refuses_bad_options(wrapper, options, match):
    before = state_of(wrapper)
    with pytest.raises(InvalidInputError, match=match):
        erasus.get_strategy("uce", **options).unlearn(model=wrapper, forget_data=FORGET)
    assert_same_state(state_of(wrapper), before)


def test_unlearner_loads_a_saved_pipeline_folder(tiny_path):
    files = {p: p.read_bytes() for p in sorted(tiny_path.rglob("*")) if p.is_file()}
    unlearner = erasus.ErasusUnlearner(model_name=str(tiny_path), strategy="esd", selector="full")
    out = unlearner.fit(forget_data=FORGET * 2, retain_data=RETAIN, steps=2, num_inference_steps=3, progress=False)
    assert isinstance(out, StableDiffusionWrapper)
    changed = {n for (n, p), (_, q) in zip(unlearner.model.named_parameters(), out.named_parameters())
               if not torch.equal(p, q)}
    assert changed and changed <= set(out.named_parameter_groups()["cross_attn"])
    assert {p: p.read_bytes() for p in sorted(tiny_path.rglob("*")) if p.is_file()} == files


def _train_erase_reference(wrapper, w_old, erase, guide, preserve, *, lamb, erase_scale, preserve_scale):
    """A float64 transcription of the paper-era official ``train-scripts/train_erase.py::edit_model``
    (rohitgandikota/unified-concept-editing, technique 'replace'): per-row outer products, then mat1 @ inv(mat2)."""
    tok = wrapper.tokenizer
    w = np.asarray(w_old, dtype=np.float64)
    mat1, mat2 = lamb * w, lamb * np.eye(w.shape[1])
    for old_text, new_text in zip(erase, [guide] * len(erase)):
        text_input = tok([old_text, new_text or " "], padding="max_length", max_length=tok.model_max_length,
                         truncation=True, return_tensors="pt")
        with torch.no_grad():
            emb = wrapper.text_encoder(text_input.input_ids)[0].double().numpy()
        fi, fn = int(text_input.attention_mask[0].sum()) - 2, int(text_input.attention_mask[1].sum()) - 2
        far = max(fi, fn)
        old_emb = emb[0][fi:len(emb[0]) - max(0, far - fi)]
        new_emb = emb[1][fn:len(emb[1]) - max(0, far - fn)]
        for k, v in zip(old_emb, new_emb @ w.T):
            mat1 += erase_scale * np.outer(v, k)
            mat2 += erase_scale * np.outer(k, k)
    for text in preserve:
        text_input = tok([text], padding="max_length", max_length=tok.model_max_length, truncation=True,
                         return_tensors="pt")
        with torch.no_grad():
            emb = wrapper.text_encoder(text_input.input_ids)[0][0].double().numpy()
        for k in emb:
            mat1 += preserve_scale * np.outer(w @ k, k)
            mat2 += preserve_scale * np.outer(k, k)
    return mat1 @ np.linalg.inv(mat2)


@pytest.mark.parametrize("retain, preserved", [(RETAIN, RETAIN), (None, [""])])
def test_uce_to_end_span_matches_the_paper_era_official_edit(wrapper, retain, preserved):
    before = {n: p.detach().clone() for n, p in wrapper.named_parameters()}
    kw = {} if retain is None else {"retain_data": retain}
    strategy = erasus.get_strategy("uce", token_span="to_end", lamb=0.5, preserve_scale=0.3)
    out = strategy.unlearn(model=wrapper, forget_data=[*FORGET, "a dress"], **kw)
    assert strategy.info_["preserved"] == preserved
    kv = set(wrapper.named_parameter_groups()["cross_attn_kv"])
    after = dict(out.named_parameters())
    for name, old in before.items():
        if name not in kv:
            assert torch.equal(old, after[name]), name
            continue
        expected = _train_erase_reference(wrapper, old.numpy(), [*FORGET, "a dress"], "", preserved, lamb=0.5,
                                          erase_scale=1.0, preserve_scale=0.3)
        np.testing.assert_allclose(after[name].detach().double().numpy(), expected, rtol=1e-4, atol=1e-5)
    assert all(torch.equal(p, before[n]) for n, p in wrapper.named_parameters())


def test_uce_to_end_span_weights_every_row_of_a_prompt_by_its_coreset_weight(wrapper):
    prompts = ["a photo of a dress", "a coat"]
    out = erasus.get_strategy("uce", token_span="to_end").unlearn(model=wrapper, forget_data=prompts,
                                                                  weights=torch.tensor([3.0, 1.0]))
    dup = erasus.get_strategy("uce", token_span="to_end").unlearn(
        model=wrapper, forget_data=[prompts[0]] * 3 + [prompts[1]], erase_scale=0.5)
    # weights (3, 1) normalised to mean 1 = (1.5, 0.5): the same system as prompt 0 thrice, prompt 1 once at scale 0.5
    for name in wrapper.named_parameter_groups()["cross_attn_kv"]:
        np.testing.assert_allclose(dict(out.named_parameters())[name].detach().numpy(),
                                   dict(dup.named_parameters())[name].detach().numpy(), rtol=1e-4, atol=1e-5)
