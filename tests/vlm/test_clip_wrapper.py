"""CLIPWrapper over a CLIPModel, a tower pair, a saved folder and a duck-typed open_clip model."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import default_collate

import erasus
from erasus.errors import ErasusTypeError, InvalidInputError
from erasus.models import CLIPWrapper, clip_parameter_groups


def _inputs(pairs):
    b = default_collate(pairs)
    return {k: b[k] for k in ("pixel_values", "input_ids", "attention_mask")}


def test_groups_partition_every_parameter(clip_data, processor):
    model, _, _, _ = clip_data
    groups = CLIPWrapper(model, processor=processor).parameter_groups()
    assert set(groups) == {"vision", "text", "projection", "logit_scale"}
    ids = [id(p) for ps in groups.values() for p in ps]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    assert {id(p) for p in groups["vision"]} == {id(p) for p in model.vision_model.parameters()}
    assert {id(p) for p in groups["text"]} == {id(p) for p in model.text_model.parameters()}
    assert {id(p) for p in groups["projection"]} == {id(model.visual_projection.weight), id(model.text_projection.weight)}
    assert groups["logit_scale"][0] is model.logit_scale
    split = clip_parameter_groups(model, split_projection=True)
    assert split["vision_projection"][0] is model.visual_projection.weight


def test_features_equal_the_model_and_layers_equal_hidden_states(clip_data, processor):
    model, forget, _, _ = clip_data
    w = CLIPWrapper(model, processor=processor)
    x = _inputs(forget[:3])
    with torch.no_grad():
        ref = model(**x, output_hidden_states=True)
        emb, layers = w.get_image_features(x["pixel_values"], layer_indices=[0, -1])
        temb, tlayers = w.get_text_features(x["input_ids"], x["attention_mask"], layer_indices=[1])
        vision = model.vision_model(pixel_values=x["pixel_values"], output_hidden_states=True).hidden_states
        text = model.text_model(input_ids=x["input_ids"], attention_mask=x["attention_mask"],
                                output_hidden_states=True).hidden_states
    torch.testing.assert_close(emb, model.get_image_features(pixel_values=x["pixel_values"]).pooler_output)
    torch.testing.assert_close(torch.nn.functional.normalize(temb, dim=-1), ref.text_embeds, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(layers[0], vision[1])  # hidden_states[0] is the embedding output
    torch.testing.assert_close(layers[-1], vision[-1])
    torch.testing.assert_close(tlayers[1], text[2])
    torch.testing.assert_close(w(**x), ref.logits_per_image, rtol=1e-5, atol=1e-5)
    with pytest.raises(InvalidInputError, match="out of range"):
        w.get_image_features(x["pixel_values"], layer_indices=[5])


def test_texts_and_images_go_through_the_processor(clip_data, processor):
    from vlm_helpers import make_images

    model, _, _, _ = clip_data
    w = CLIPWrapper(model, processor=processor)
    imgs = make_images([0, 1], seed=0)
    enc = processor(images=imgs, text=["a red square", "a green square"], padding=True, return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(w.get_image_features(images=imgs), w.get_image_features(enc["pixel_values"]))
        torch.testing.assert_close(w.get_text_features(texts=["a red square", "a green square"]),
                                   w.get_text_features(enc["input_ids"], enc["attention_mask"]))


def test_tower_pair_gives_the_clip_model_embeddings(clip_data):
    from transformers import CLIPTextModelWithProjection, CLIPVisionModelWithProjection

    model, forget, _, _ = clip_data
    vision = CLIPVisionModelWithProjection(model.config.vision_config)
    text = CLIPTextModelWithProjection(model.config.text_config)
    vision.vision_model.load_state_dict(model.vision_model.state_dict())
    vision.visual_projection.load_state_dict(model.visual_projection.state_dict())
    text.text_model.load_state_dict(model.text_model.state_dict())
    text.text_projection.load_state_dict(model.text_projection.state_dict())
    w = CLIPWrapper((vision, text))
    x = _inputs(forget[:3])
    with torch.no_grad():
        torch.testing.assert_close(w.get_image_features(x["pixel_values"]),
                                   model.get_image_features(pixel_values=x["pixel_values"]).pooler_output)
        torch.testing.assert_close(w.get_text_features(x["input_ids"], x["attention_mask"]),
                                   model.get_text_features(input_ids=x["input_ids"],
                                                           attention_mask=x["attention_mask"]).pooler_output)
    groups = w.parameter_groups()
    assert sum(len(v) for v in groups.values()) == len(list(w.parameters()))
    assert {id(p) for p in groups["vision"]} == {id(p) for p in vision.vision_model.parameters()}


def test_saved_folder_round_trip(clip_data, processor, tmp_path):
    model, forget, _, _ = clip_data
    CLIPWrapper(model, processor=processor).save_pretrained(tmp_path)
    loaded = CLIPWrapper(tmp_path)
    assert loaded.processor is not None
    x = _inputs(forget[:2])
    with torch.no_grad():
        torch.testing.assert_close(loaded(**x), model(**x).logits_per_image)


class _OpenClipLike(nn.Module):
    """open_clip's CLIP layout (visual with proj, transformer.resblocks, token_embedding, text_projection)."""

    def __init__(self, width: int = 8, dim: int = 4, vocab: int = 20) -> None:
        super().__init__()
        self.visual = nn.Module()
        self.visual.conv = nn.Linear(12, width)
        self.visual.transformer = nn.Module()
        self.visual.transformer.resblocks = nn.ModuleList([nn.Linear(width, width) for _ in range(2)])
        self.visual.proj = nn.Parameter(torch.randn(width, dim))
        self.token_embedding = nn.Embedding(vocab, width)
        self.transformer = nn.Module()
        self.transformer.resblocks = nn.ModuleList([nn.Linear(width, width) for _ in range(2)])
        self.ln_final = nn.LayerNorm(width)
        self.text_projection = nn.Parameter(torch.randn(width, dim))
        self.logit_scale = nn.Parameter(torch.tensor(2.0))

    def encode_image(self, images):
        h = self.visual.conv(images.reshape(images.shape[0], -1))
        for blk in self.visual.transformer.resblocks:
            h = blk(h)
        return h @ self.visual.proj

    def encode_text(self, ids):
        h = self.token_embedding(ids)
        for blk in self.transformer.resblocks:
            h = blk(h)
        return self.ln_final(h[torch.arange(ids.shape[0]), ids.argmax(-1)]) @ self.text_projection


def test_open_clip_models_are_wrapped_by_duck_typing():
    torch.manual_seed(0)
    oc = _OpenClipLike()
    w = CLIPWrapper(oc)
    images, ids = torch.randn(3, 3, 2, 2), torch.randint(0, 20, (3, 5))
    groups = w.parameter_groups()
    assert {id(p) for p in groups["projection"]} == {id(oc.visual.proj), id(oc.text_projection)}
    assert groups["logit_scale"][0] is oc.logit_scale
    assert {id(p) for p in groups["vision"]} == {id(p) for p in oc.visual.parameters()} - {id(oc.visual.proj)}
    assert sum(len(v) for v in groups.values()) == len(list(oc.parameters()))
    loss = erasus.tasks.get_task("contrastive").per_sample_loss(w, (images, ids))
    v = torch.nn.functional.normalize(oc.encode_image(images), dim=-1)
    t = torch.nn.functional.normalize(oc.encode_text(ids), dim=-1)
    s = oc.logit_scale.exp() * v @ t.T
    ref = (torch.nn.functional.cross_entropy(s, torch.arange(3), reduction="none")
           + torch.nn.functional.cross_entropy(s.T, torch.arange(3), reduction="none")) / 2
    torch.testing.assert_close(loss, ref)
    _, hidden = w.get_image_features(images, layer_indices=[1])
    assert hidden[1].shape == (3, 8)


def test_non_clip_models_are_refused():
    with pytest.raises(ErasusTypeError, match="not a CLIP model"):
        CLIPWrapper(nn.Linear(2, 2))
    with pytest.raises(InvalidInputError, match="needs a CLIP model"):
        CLIPWrapper()
