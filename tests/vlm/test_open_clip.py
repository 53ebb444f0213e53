"""CLIPWrapper over a real (tiny, randomly initialised) ``open_clip.CLIP`` built offline from its config classes:
parameter groups, embeddings, layer hooks, the contrastive loss against open_clip's own ``ClipLoss`` and the
decoupling property (a zero learning rate freezes that tower bit for bit)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import erasus
from erasus.models import CLIPWrapper, clip_parameter_groups
from erasus.tasks.contrastive import ContrastiveTask

open_clip = pytest.importorskip("open_clip", reason="open-clip-torch (erasus[vlm], opt-in: it brings torchvision and timm) is not installed")


@pytest.fixture(scope="module")
def oc():
    torch.manual_seed(0)
    vision = open_clip.CLIPVisionCfg(layers=2, width=32, head_width=16, patch_size=8, image_size=16)
    # open_clip's own BPE vocabulary (shipped in the package): 49,408 tokens
    text = open_clip.CLIPTextCfg(context_length=12, vocab_size=49408, width=32, heads=2, layers=2)
    return open_clip.CLIP(embed_dim=16, vision_cfg=vision, text_cfg=text).eval()


def _pairs(n, *, seed):
    g = torch.Generator().manual_seed(seed)
    captions = [f"a photo of a {w}" for w in ("dress", "shirt", "sandal", "bag", "boot", "coat")]
    ids = open_clip.tokenize([captions[i % len(captions)] for i in range(n)], context_length=12)
    return [{"pixel_values": torch.randn(3, 16, 16, generator=g), "input_ids": ids[i],
             "attention_mask": (ids[i] != 0).long()} for i in range(n)]


def test_groups_partition_the_open_clip_parameters_by_tower(oc):
    w = CLIPWrapper(oc)
    assert w.kind == "open_clip"
    groups = w.parameter_groups(split_projection=True)
    assert [id(p) for p in groups["vision_projection"]] == [id(oc.visual.proj)]
    assert [id(p) for p in groups["text_projection"]] == [id(oc.text_projection)]
    assert groups["logit_scale"][0] is oc.logit_scale
    assert {id(p) for p in groups["vision"]} == {id(p) for p in oc.visual.parameters()} - {id(oc.visual.proj)}
    text_expected = {id(p) for m in (oc.transformer, oc.token_embedding, oc.ln_final) for p in m.parameters()}
    text_expected.add(id(oc.positional_embedding))
    assert {id(p) for p in groups["text"]} == text_expected
    assert sorted(id(p) for g in groups.values() for p in g) == sorted(id(p) for p in oc.parameters())


def test_embeddings_and_layer_hooks_are_open_clips_own(oc):
    w = CLIPWrapper(oc)
    pairs = _pairs(4, seed=1)
    images = torch.stack([p["pixel_values"] for p in pairs])
    ids = torch.stack([p["input_ids"] for p in pairs])
    seen = {}
    handle = oc.visual.transformer.resblocks[1].register_forward_hook(lambda m, a, out: seen.setdefault("h", out))
    with torch.no_grad():
        emb, hidden = w.get_image_features(images, layer_indices=[1])
        torch.testing.assert_close(w.get_text_features(ids), oc.encode_text(ids))
    handle.remove()
    torch.testing.assert_close(emb, oc.encode_image(images))
    # 16/8 squared patches + the class token, width 32, batch first whatever open_clip's block layout
    assert hidden[1].shape == (4, 5, 32)
    h = seen["h"] if seen["h"].shape[0] == 4 else seen["h"].transpose(0, 1)
    torch.testing.assert_close(hidden[1], h)


def test_contrastive_loss_matches_open_clips_clip_loss(oc):
    w = CLIPWrapper(oc)
    batch = torch.utils.data.default_collate(_pairs(6, seed=2))
    with torch.no_grad():
        per_sample = ContrastiveTask().per_sample_loss(w, batch)
        img, txt, scale = oc(batch["pixel_values"], batch["input_ids"])  # normalised features, exp(logit_scale)
        ref = open_clip.ClipLoss()(img, txt, scale)
    assert per_sample.shape == (6,)
    assert float(per_sample.mean()) == pytest.approx(float(ref), rel=1e-5)


@pytest.mark.parametrize("frozen", ["vision", "text"])
def test_modality_decoupling_zero_lr_freezes_that_open_clip_tower(oc, frozen):
    before = {k: v.clone() for k, v in oc.state_dict().items()}
    lrs = {"vision_lr": 0.0, "text_lr": 1e-3} if frozen == "vision" else {"vision_lr": 1e-3, "text_lr": 0.0}
    out = erasus.get_strategy("modality_decoupling", alignment_weight=1.0, **lrs).unlearn(
        model=CLIPWrapper(oc), forget_data=_pairs(6, seed=3), retain_data=_pairs(6, seed=4), steps=3, progress=False)
    assert all(torch.equal(v, before[k]) for k, v in oc.state_dict().items())  # the caller's model is untouched
    g0, g1 = clip_parameter_groups(CLIPWrapper(oc), split_projection=True), clip_parameter_groups(out, split_projection=True)
    other = "text" if frozen == "vision" else "vision"
    for name in (frozen, f"{frozen}_projection", "logit_scale"):
        assert all(torch.equal(p0, p1) for p0, p1 in zip(g0[name], g1[name]))
    assert any(not torch.equal(p0, p1) for p0, p1 in zip(g0[other], g1[other]))
    assert np.isfinite([float(p.detach().sum()) for p in out.parameters()]).all()
