"""``ErasusUnlearner(model_name=folder)`` on LLaVA, BLIP-2 and BLIP retrieval folders saved with save_pretrained:
the folder loads as erasus' wrapper, records become its samples, the forget answers are unlearned and the
checkpoint on disk is untouched. Reference: the HF model's own answer loss before unlearning."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from mllm_helpers import FORGET_QA, RETAIN_QA, images, memorise, records, tiny_blip2, tiny_llava
from PIL import Image

import erasus
from erasus.models import BLIP2Wrapper, BLIPWrapper, LLaVAWrapper


def _nll(w, ds) -> float:
    out = []
    with torch.no_grad():
        for i in range(len(ds)):
            it = ds[i]
            n = int(it["attention_mask"].sum())
            out.append(float(w.model(pixel_values=it["pixel_values"][None], input_ids=it["input_ids"][None, :n],
                                      labels=it["labels"][None, :n]).loss))
    return float(np.mean(out))


def _pil(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, size=(20, 20, 3), dtype=np.uint8))


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture(scope="module")
def llava_folder(tokenizer, tmp_path_factory):
    """A memorised tiny LLaVA saved with a full LlavaProcessor (PIL images go through its image processor)."""
    from transformers import CLIPImageProcessor, LlavaProcessor

    proc = LlavaProcessor(image_processor=CLIPImageProcessor(size={"shortest_edge": 16},
                                                             crop_size={"height": 16, "width": 16}),
                          tokenizer=tokenizer, patch_size=4, vision_feature_select_strategy="default",
                          num_additional_image_tokens=1)
    w = LLaVAWrapper(tiny_llava(tokenizer), processor=proc)
    forget = records(FORGET_QA, _pil(0))
    retain = records(RETAIN_QA, _pil(1))
    memorise(w, w.dataset(forget + retain)[:])
    path = tmp_path_factory.mktemp("tiny-llava")
    w.model.save_pretrained(path)
    proc.save_pretrained(path)
    return path, forget, retain


def test_llava_folder_through_the_high_level_api(llava_folder):
    path, forget, retain = llava_folder
    unlearner = erasus.ErasusUnlearner(model_name=path, strategy="grad_diff", selector="random", lr=5e-3,
                                       optimizer="adamw")
    w = unlearner.model
    assert isinstance(w, LLaVAWrapper) and w.processor is not None and w.image_processor is not None
    f_ds, r_ds = w.dataset(forget), w.dataset(retain)
    f0, r0 = _nll(w, f_ds), _nll(w, r_ds)
    assert f0 < 0.5  # the saved model knows the forget answers
    out = unlearner.fit(forget_data=forget, retain_data=retain, prune_ratio=0.67, steps=15, progress=False)
    assert isinstance(out, LLaVAWrapper) and out is not w and len(unlearner.selection_) == 2
    f1, r1 = _nll(out, f_ds), _nll(out, r_ds)
    assert f1 > f0 + 1.0 and r1 - r0 < (f1 - f0) / 2
    assert _same_weights(LLaVAWrapper(path), w)  # the checkpoint and the loaded model are untouched
    assert isinstance(out.generate_with_image(forget[0]["image"], forget[0]["question"], max_new_tokens=3), str)


def test_blip2_folder_saved_with_a_tokenizer_only(tokenizer, tmp_path):
    """No image processor saved: the folder's tokenizer is picked up and images come preprocessed."""
    img = images(2, seed=0)
    w = BLIP2Wrapper(tiny_blip2(tokenizer), tokenizer=tokenizer)
    forget, retain = records(FORGET_QA, img[0]), records(RETAIN_QA, img[1])
    memorise(w, w.dataset(forget + retain)[:])
    w.model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    unlearner = erasus.ErasusUnlearner(model_name=tmp_path, strategy="npo", selector="random", lr=5e-3,
                                       optimizer="adamw")
    loaded = unlearner.model
    assert isinstance(loaded, BLIP2Wrapper) and loaded.tokenizer is not None
    f_ds = loaded.dataset(forget)
    f0 = _nll(loaded, f_ds)
    out = unlearner.fit(forget_data=forget, retain_data=retain, prune_ratio=0.67, steps=15, progress=False)
    assert isinstance(out, BLIP2Wrapper)
    assert _nll(out, f_ds) > f0 + 1.0
    assert _same_weights(BLIP2Wrapper(tmp_path), loaded)


def test_blip_retrieval_folder_runs_modality_decoupling(tmp_path):
    from transformers import BlipConfig, BlipForImageTextRetrieval, BlipTextConfig, BlipVisionConfig

    torch.manual_seed(0)
    cfg = BlipConfig(text_config=BlipTextConfig(vocab_size=40, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                                num_attention_heads=2, encoder_hidden_size=16).to_dict(),
                     vision_config=BlipVisionConfig(image_size=16, patch_size=4, hidden_size=16, intermediate_size=32,
                                                    num_hidden_layers=1, num_attention_heads=2).to_dict(),
                     image_text_hidden_size=8)
    BlipForImageTextRetrieval(cfg).save_pretrained(tmp_path)
    g = torch.Generator().manual_seed(1)
    pairs = [{"pixel_values": torch.randn(3, 16, 16, generator=g), "input_ids": torch.randint(5, 40, (6,), generator=g),
              "attention_mask": torch.ones(6, dtype=torch.long)} for _ in range(12)]
    unlearner = erasus.ErasusUnlearner(model_name=tmp_path, strategy="modality_decoupling", selector="random",
                                       vision_lr=0.0, text_lr=1e-2)
    assert isinstance(unlearner.model, BLIPWrapper)
    out = unlearner.fit(forget_data=pairs[:6], retain_data=pairs[6:], prune_ratio=0.5, steps=3, progress=False)
    before, after = unlearner.model.state_dict(), out.state_dict()
    vision = [k for k in before if k.startswith(("model.vision_model.", "model.vision_proj."))]
    assert vision and all(torch.equal(before[k], after[k]) for k in vision)
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("model.text_encoder."))
    assert _same_weights(BLIPWrapper(tmp_path), unlearner.model)
