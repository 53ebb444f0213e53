import pytest
import torch
import torch.nn.functional as F
from erasus.errors import ErasusTypeError, InvalidInputError, RegistryError
from erasus.tasks import ClassificationTask, Task, get_task, infer_task, list_tasks


def _model_and_batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    model = torch.nn.Linear(5, 3)
    x = torch.randn(8, 5, generator=g)
    y = torch.randint(0, 3, (8,), generator=g)
    return model, x, y


def test_per_sample_loss_matches_float64_cross_entropy():
    model, x, y = _model_and_batch()
    task = ClassificationTask()
    got = task.per_sample_loss(model, (x, y))
    logits64 = x.double() @ model.weight.double().T + model.bias.double()
    ref = -torch.log_softmax(logits64, dim=1)[torch.arange(8), y]
    torch.testing.assert_close(got.double(), ref, rtol=1e-5, atol=1e-6)
    assert got.requires_grad


def test_weighted_loss_is_normalised_weighted_mean():
    model, x, y = _model_and_batch(1)
    task = ClassificationTask()
    w = torch.tensor([0.0, 1.0, 2.0, 3.0, 0.5, 0.5, 1.0, 4.0])
    losses = F.cross_entropy(model(x), y, reduction="none")
    torch.testing.assert_close(task.loss(model, (x, y), weights=w), (w * losses).sum() / w.sum())
    torch.testing.assert_close(task.loss(model, (x, y)), losses.mean())
    # scaling all weights leaves the loss unchanged; a zero weight removes the sample
    torch.testing.assert_close(task.loss(model, (x, y), weights=2 * torch.ones(8)), losses.mean())
    keep = w > 0
    torch.testing.assert_close(
        task.loss(model, (x, y), weights=w), task.loss(model, (x[keep], y[keep]), weights=w[keep])
    )


def test_bad_weights_are_rejected():
    model, x, y = _model_and_batch()
    task = ClassificationTask()
    with pytest.raises(InvalidInputError, match="weights has 3 entries"):
        task.loss(model, (x, y), weights=torch.ones(3))
    with pytest.raises(InvalidInputError, match="non-negative"):
        task.loss(model, (x, y), weights=-torch.ones(8))


def test_labels_with_labels_and_dict_batches():
    model, x, y = _model_and_batch()
    task = ClassificationTask()
    assert torch.equal(task.labels([x, y]), y)
    new = (y + 1) % 3
    b = task.with_labels((x, y), new)
    assert torch.equal(task.labels(b), new) and b[0] is x
    d = {"pixel_values": x, "labels": y}
    assert torch.equal(task.labels(task.with_labels(d, new)), new)
    torch.testing.assert_close(task.outputs(model, d), model(x))
    assert task.num_classes(model, (x, y)) == 3
    assert task.batch_size((x, y)) == 8
    assert task.features_input((x, y)) is x
    with pytest.raises(InvalidInputError, match="no labels"):
        task.labels((x,))
    with pytest.raises(ErasusTypeError, match="integer class ids"):
        task.labels((x, y.float()))


def test_to_device_moves_nested_tensors():
    task = ClassificationTask()
    x = torch.zeros(2, 3)
    out = task.to_device({"a": (x, [x]), "b": 1}, "meta")
    assert out["a"][0].device.type == "meta" and out["a"][1][0].device.type == "meta" and out["b"] == 1


def test_hf_style_output_and_shape_errors():
    class HF(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(4, 2)

        def forward(self, x):
            return {"logits": self.lin(x)}

    m = HF()
    x = torch.randn(3, 4)
    torch.testing.assert_close(ClassificationTask().outputs(m, (x, torch.zeros(3, dtype=torch.long))), m.lin(x))
    with pytest.raises(InvalidInputError, match=r"\(B, C\)"):
        ClassificationTask().outputs(torch.nn.Identity(), (torch.randn(2, 3, 4),))


def test_registry_and_inference():
    assert "classification" in list_tasks()
    assert isinstance(get_task("classification"), ClassificationTask)
    t = ClassificationTask()
    assert get_task(t) is t
    with pytest.raises(RegistryError, match="unknown task"):
        get_task("nope")
    assert isinstance(infer_task(torch.nn.Linear(2, 2)), ClassificationTask)

    class ClipLike(torch.nn.Module):
        def get_image_features(self, x):
            return x

        def get_text_features(self, x):
            return x

    # the contrastive adapter is imported on first use
    assert infer_task(ClipLike()).name == "contrastive"


def test_task_protocol_is_abstract():
    with pytest.raises(TypeError):
        Task()  # type: ignore[abstract]


def test_with_inputs_replaces_inputs_and_keeps_labels():
    model, x, y = _model_and_batch()
    task = ClassificationTask()
    x2 = x + 1
    b = task.with_inputs((x, y), x2)
    assert b[0] is x2 and b[1] is y
    d = task.with_inputs({"pixel_values": x, "labels": y}, x2)
    assert d["pixel_values"] is x2 and d["labels"] is y
    torch.testing.assert_close(task.outputs(model, b), model(x2))
