"""wav2vec2 / HuBERT sequence classifiers take ``{"input_values", "labels"}`` dict batches through the
classification adapter; the per-sample loss equals the model's own cross-entropy computed one clip at a time."""

from __future__ import annotations

import pytest
import torch

import erasus
from erasus.tasks import ClassificationTask, infer_task

transformers = pytest.importorskip("transformers")

_TINY = dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
             conv_dim=(8, 8), conv_stride=(5, 4), conv_kernel=(10, 8), num_conv_pos_embeddings=8,
             num_conv_pos_embedding_groups=2, num_labels=3, classifier_proj_size=8,
             mask_time_prob=0.0, layerdrop=0.0)


def _model(kind: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if kind == "wav2vec2":
        return transformers.Wav2Vec2ForSequenceClassification(transformers.Wav2Vec2Config(**_TINY)).eval()
    return transformers.HubertForSequenceClassification(transformers.HubertConfig(**_TINY)).eval()


@pytest.mark.parametrize("kind", ["wav2vec2", "hubert"])
def test_per_sample_loss_equals_the_models_own_loss_one_clip_at_a_time(kind):
    model = _model(kind)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, 800, generator=g)
    y = torch.tensor([0, 2, 1, 2])
    batch = {"input_values": x, "labels": y}
    assert isinstance(infer_task(model, [batch]), ClassificationTask)
    got = ClassificationTask().per_sample_loss(model, batch)
    with torch.no_grad():
        ref = torch.stack([model(input_values=x[i:i + 1], labels=y[i:i + 1]).loss for i in range(4)])
    torch.testing.assert_close(got.detach(), ref, rtol=1e-4, atol=1e-5)
    assert ClassificationTask().num_classes(model, batch) == 3


def test_attention_mask_of_a_padded_clip_reaches_the_model():
    torch.manual_seed(0)
    # wav2vec2-base style (group norm) ignores attention_mask; the "layer" feature extractor uses it
    model = transformers.Wav2Vec2ForSequenceClassification(
        transformers.Wav2Vec2Config(**_TINY, feat_extract_norm="layer", do_stable_layer_norm=True)).eval()
    g = torch.Generator().manual_seed(2)
    short = torch.randn(1, 600, generator=g)
    padded = torch.cat([short, torch.zeros(1, 200)], dim=1)
    mask = torch.cat([torch.ones(1, 600, dtype=torch.long), torch.zeros(1, 200, dtype=torch.long)], dim=1)
    task = ClassificationTask()
    with torch.no_grad():
        with_mask = task.outputs(model, {"input_values": padded, "attention_mask": mask})
        ref = model(input_values=padded, attention_mask=mask).logits
        without = task.outputs(model, {"input_values": padded})
    torch.testing.assert_close(with_mask, ref)
    assert not torch.allclose(with_mask, without)


def test_gradient_ascent_on_wav2vec2_dict_items_raises_the_forget_loss():
    model = _model("wav2vec2")
    g = torch.Generator().manual_seed(3)
    items = [{"input_values": torch.randn(800, generator=g), "labels": torch.tensor(i % 3)} for i in range(6)]
    task = ClassificationTask()
    batch = torch.utils.data.default_collate(items)
    out = erasus.get_strategy("gradient_ascent", lr=1e-2, optimizer="adam").unlearn(
        model=model, forget_data=items, steps=3, progress=False)
    with torch.no_grad():
        assert float(task.per_sample_loss(out, batch).mean()) > float(task.per_sample_loss(model, batch).mean())


def test_a_saved_wav2vec2_classifier_folder_loads_through_the_unlearner(tmp_path):
    model = _model("wav2vec2")
    model.save_pretrained(tmp_path / "clf")
    transformers.Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000).save_pretrained(tmp_path / "clf")
    unl = erasus.ErasusUnlearner(model_name=str(tmp_path / "clf"), strategy="gradient_ascent", selector="full")
    assert type(unl.model) is transformers.Wav2Vec2ForSequenceClassification
    for a, b in zip(unl.model.parameters(), model.parameters()):
        assert torch.equal(a, b)
    torch.manual_seed(0)
    transformers.Wav2Vec2ForCTC(transformers.Wav2Vec2Config(**_TINY)).save_pretrained(tmp_path / "ctc")
    with pytest.raises(erasus.errors.InvalidInputError, match="sequence classifiers"):
        erasus.ErasusUnlearner(model_name=str(tmp_path / "ctc"), strategy="gradient_ascent")
