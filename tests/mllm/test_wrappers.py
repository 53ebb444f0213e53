"""LLaVAWrapper / BLIP2Wrapper / BLIPWrapper and the multimodal causal-LM task, on tiny offline configs.

References: the model's own loss (``labels=`` in the HF forward) one unpadded sample at a time, the HF
processors' token layout (LlavaProcessor, Blip2Processor), a hand-written greedy decoding loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from mllm_helpers import FORGET_QA, RETAIN_QA, images, records, tiny_blip2, tiny_llava

from erasus import get_strategy as erasus_get_strategy
from erasus.errors import ErasusTypeError, InvalidInputError
from erasus.models import BLIP2Wrapper, BLIPWrapper, LLaVAWrapper
from erasus.tasks import infer_task
from erasus.tasks.causal_lm import CausalLMTask
from erasus.tasks.multimodal_lm import MultimodalCausalLMTask

WRAPPERS = {"llava": (LLaVAWrapper, tiny_llava), "blip2": (BLIP2Wrapper, tiny_blip2)}


@pytest.fixture(params=sorted(WRAPPERS))
def wrapper(request, tokenizer):
    cls, make = WRAPPERS[request.param]
    return cls(make(tokenizer), tokenizer=tokenizer)


def _pil(seed: int):
    from PIL import Image

    return Image.fromarray((np.random.default_rng(seed).random((20, 20, 3)) * 255).astype("uint8"))


def test_per_sample_loss_matches_the_models_own_loss_one_sample_at_a_time(wrapper):
    img = images(2, seed=1)
    recs = records(FORGET_QA, img[0]) + records(RETAIN_QA[:1], img[1])  # answers of different lengths: padding
    ds = wrapper.dataset(recs)
    batch = ds[:]
    assert len({int(m.sum()) for m in batch["attention_mask"]}) > 1
    got = MultimodalCausalLMTask().per_sample_loss(wrapper, batch)
    with torch.no_grad():
        for i, r in enumerate(recs):
            one = wrapper.encode(r["image"], r["question"], r["answer"])
            ref = wrapper.model(pixel_values=one["pixel_values"][None], input_ids=one["input_ids"][None],
                                labels=one["labels"][None]).loss
            torch.testing.assert_close(got[i], ref, rtol=1e-5, atol=1e-5)


def test_the_image_is_part_of_the_input_of_every_causal_lm_scorer(wrapper):
    """The strategies score with plain CausalLMTask(); it must forward pixel_values, not drop them."""
    ds = wrapper.dataset(records(FORGET_QA, images(1, seed=2)[0]))
    batch = ds[:]
    with torch.no_grad():
        mm = MultimodalCausalLMTask().per_sample_loss(wrapper, batch)
        plain = CausalLMTask().log_likelihood(wrapper, batch, normalize=True)
        other = dict(batch, pixel_values=images(3, seed=3))
        moved = MultimodalCausalLMTask().per_sample_loss(wrapper, other)
    torch.testing.assert_close(-plain, mm, rtol=1e-5, atol=1e-5)
    assert (moved - mm).abs().min() > 1e-4


def test_labels_cover_the_answer_tokens_only(wrapper, tokenizer):
    e = wrapper.encode(images(1, seed=0)[0], "Who is this?", "This is Alba Quist.")
    answer = tokenizer("This is Alba Quist.", add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    scored = e["labels"][e["labels"] != -100].tolist()
    assert scored == answer
    assert e["input_ids"][-len(answer):].tolist() == answer
    assert int((e["input_ids"] == wrapper.image_token_id).sum()) == wrapper.num_image_tokens
    assert bool((e["labels"][e["input_ids"] == wrapper.image_token_id] == -100).all())


def test_llava_layout_matches_llava_processor(tokenizer):
    from transformers import CLIPImageProcessor, LlavaProcessor

    proc = LlavaProcessor(image_processor=CLIPImageProcessor(size={"shortest_edge": 16},
                                                             crop_size={"height": 16, "width": 16}),
                          tokenizer=tokenizer, patch_size=4, vision_feature_select_strategy="default",
                          num_additional_image_tokens=1)
    w = LLaVAWrapper(tiny_llava(tokenizer), processor=proc)
    img = _pil(0)
    ref = proc(images=img, text="USER: <image>\nWho is this? ASSISTANT:", return_tensors="pt")
    e = w.encode(img, "Who is this?", "This is Alba Quist.")
    n = ref["input_ids"].shape[1]
    assert e["input_ids"][:n].tolist() == ref["input_ids"][0].tolist()
    torch.testing.assert_close(e["pixel_values"], ref["pixel_values"][0])


def test_blip2_layout_matches_blip2_processor(tokenizer):
    from transformers import AddedToken, Blip2Processor, BlipImageProcessor

    proc = Blip2Processor(image_processor=BlipImageProcessor(size={"height": 16, "width": 16}), tokenizer=tokenizer,
                          num_query_tokens=4)
    proc.image_token = AddedToken("<image>", normalized=False, special=True)
    w = BLIP2Wrapper(tiny_blip2(tokenizer), processor=proc)
    img = _pil(1)
    ref = proc(images=img, text="Question: Who is this? Answer:", return_tensors="pt")
    e = w.encode(img, "Who is this?", "This is Alba Quist.")
    n = ref["input_ids"].shape[1]
    assert e["input_ids"][:n].tolist() == ref["input_ids"][0].tolist()
    torch.testing.assert_close(e["pixel_values"], ref["pixel_values"][0])


def test_generate_with_image_is_greedy_decoding(wrapper, tokenizer):
    img = images(1, seed=4)[0]
    got = wrapper.generate_with_image(img, "Who is this?", max_new_tokens=5)
    prompt = wrapper.encode(img, "Who is this?", "x")
    ids = prompt["input_ids"][prompt["labels"] == -100].tolist()
    new = []
    with torch.no_grad():
        for _ in range(5):
            logits = wrapper.model(pixel_values=img[None], input_ids=torch.tensor([ids + new])).logits
            nxt = int(logits[0, -1].argmax())
            new.append(nxt)
            if nxt == tokenizer.eos_token_id:
                break
    assert got == tokenizer.decode(new, skip_special_tokens=True)


def test_llava_parameter_groups_partition_the_model(tokenizer):
    model = tiny_llava(tokenizer)
    groups = LLaVAWrapper(model, tokenizer=tokenizer).parameter_groups()
    assert sorted(groups) == ["language_model", "multi_modal_projector", "vision_tower"]
    ids = [id(p) for g in groups.values() for p in g]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    assert {id(p) for p in groups["vision_tower"]} == {id(p) for p in model.model.vision_tower.parameters()}
    assert {id(p) for p in groups["multi_modal_projector"]} == {
        id(p) for p in model.model.multi_modal_projector.parameters()}
    assert id(model.lm_head.weight) in {id(p) for p in groups["language_model"]}


def test_blip2_parameter_groups_partition_the_model(tokenizer):
    model = tiny_blip2(tokenizer)
    groups = BLIP2Wrapper(model, tokenizer=tokenizer).parameter_groups()
    ids = [id(p) for g in groups.values() for p in g]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    assert id(model.query_tokens) in {id(p) for p in groups["qformer"]}
    assert {id(p) for p in groups["vision"]} == {id(p) for p in model.vision_model.parameters()}


def test_infer_task_picks_the_multimodal_adapter(tokenizer):
    model = tiny_llava(tokenizer)
    assert infer_task(model).name == "multimodal_causal_lm"
    assert infer_task(LLaVAWrapper(model, tokenizer=tokenizer)).name == "multimodal_causal_lm"
    assert infer_task(BLIP2Wrapper(tiny_blip2(tokenizer), tokenizer=tokenizer)).name == "multimodal_causal_lm"


def test_bad_inputs_raise_specific_errors(wrapper, tokenizer):
    img = images(1, seed=0)[0]
    with pytest.raises(InvalidInputError, match="'image'.*'question'.*'answer'"):
        wrapper.dataset([{"image": img, "question": "Who is this?"}])
    with pytest.raises(InvalidInputError, match="max_length"):
        wrapper.encode(img, "Who is this?", "This is Alba Quist.", max_length=wrapper.num_image_tokens)
    with pytest.raises(InvalidInputError, match=r"\(C, H, W\)"):
        wrapper.encode(torch.zeros(16, 16), "Who is this?", "x")
    with pytest.raises(InvalidInputError, match="NaN"):
        wrapper.encode(torch.full((3, 16, 16), float("nan")), "Who is this?", "x")
    with pytest.raises(InvalidInputError, match="image processor"):
        wrapper.encode(_pil(0), "Who is this?", "x")
    batch = wrapper.dataset(records(FORGET_QA, img))[:]
    with pytest.raises(ErasusTypeError, match="pixel_values"):
        MultimodalCausalLMTask().per_sample_loss(wrapper, {k: v for k, v in batch.items() if k != "pixel_values"})
    with pytest.raises(InvalidInputError, match="images but input_ids"):
        MultimodalCausalLMTask().per_sample_loss(wrapper, dict(batch, pixel_values=batch["pixel_values"][:1]))
    cls = type(wrapper)
    with pytest.raises(InvalidInputError, match="<image>"):
        cls(wrapper.model, tokenizer=tokenizer, prompt_template="{question}")
    with pytest.raises(ErasusTypeError, match="not a"):
        cls(torch.nn.Linear(2, 2), tokenizer=tokenizer)


def test_blip_retrieval_wrapper_is_a_dual_encoder():
    """get_image/text_features are BLIP's ITC embeddings (vision_proj / text_proj of the [CLS] states), the
    same ones BlipForImageTextRetrieval(use_itm_head=False) compares."""
    from transformers import BlipConfig, BlipForImageTextRetrieval, BlipTextConfig, BlipVisionConfig

    torch.manual_seed(0)
    cfg = BlipConfig(text_config=BlipTextConfig(vocab_size=40, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                                num_attention_heads=2, encoder_hidden_size=16).to_dict(),
                     vision_config=BlipVisionConfig(image_size=16, patch_size=4, hidden_size=16, intermediate_size=32,
                                                    num_hidden_layers=1, num_attention_heads=2).to_dict(),
                     image_text_hidden_size=8)
    model = BlipForImageTextRetrieval(cfg).eval()
    w = BLIPWrapper(model)
    pv, ids = images(3, seed=5), torch.randint(5, 40, (3, 6), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = model(input_ids=ids, pixel_values=pv, use_itm_head=False).itm_score
        v = torch.nn.functional.normalize(w.get_image_features(pv), dim=-1)
        t = torch.nn.functional.normalize(w.get_text_features(ids), dim=-1)
        torch.testing.assert_close(v @ t.T, ref, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(w(pv, ids), w.logit_scale.exp() * ref, rtol=1e-5, atol=1e-5)
        itm = w.itm_scores(pv, ids)
    assert itm.shape == (3,) and bool(((itm > 0) & (itm < 1)).all())
    groups = w.parameter_groups()
    assert sum(len(g) for g in groups.values()) == len(list(w.parameters()))


def test_blip_retrieval_runs_modality_decoupling_through_the_contrastive_task():
    """BLIPWrapper is picked up as a CLIP-style model: a zero vision rate leaves the image tower and its
    projection bit-identical while the text side moves (erasus.strategies.vlm.modality_decoupling)."""
    from transformers import BlipConfig, BlipForImageTextRetrieval, BlipTextConfig, BlipVisionConfig

    torch.manual_seed(0)
    cfg = BlipConfig(text_config=BlipTextConfig(vocab_size=40, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                                num_attention_heads=2, encoder_hidden_size=16).to_dict(),
                     vision_config=BlipVisionConfig(image_size=16, patch_size=4, hidden_size=16, intermediate_size=32,
                                                    num_hidden_layers=1, num_attention_heads=2).to_dict(),
                     image_text_hidden_size=8)
    w = BLIPWrapper(BlipForImageTextRetrieval(cfg).eval())
    assert infer_task(w).name == "contrastive"
    g = torch.Generator().manual_seed(1)
    pairs = [{"pixel_values": torch.randn(3, 16, 16, generator=g), "input_ids": torch.randint(5, 40, (6,), generator=g),
              "attention_mask": torch.ones(6, dtype=torch.long)} for _ in range(8)]
    out = erasus_get_strategy("modality_decoupling", vision_lr=0.0, text_lr=1e-2).unlearn(
        model=w, forget_data=pairs[:4], retain_data=pairs[4:], steps=3, progress=False)
    before, after = w.state_dict(), out.state_dict()
    vision = [k for k in before if k.startswith(("model.vision_model.", "model.vision_proj."))]
    text = [k for k in before if k.startswith(("model.text_encoder.", "model.text_proj."))]
    assert vision and all(torch.equal(before[k], after[k]) for k in vision)
    assert any(not torch.equal(before[k], after[k]) for k in text)
