"""The specification's high- and mid-level CLIP examples, run as a new user would against a local CLIP folder."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from torch.utils.data import DataLoader

import erasus
from erasus.models import CLIPWrapper
from erasus.selectors.influence import InfluenceSelector
from erasus.strategies.vlm.modality_decoupling import ModalityDecouplingStrategy


@pytest.fixture(scope="module")
def clip_folder(clip_data, processor, tmp_path_factory):
    model, _, _, _ = clip_data
    path = tmp_path_factory.mktemp("tiny-clip")
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


def _write_images(folder, labels, seed):
    from vlm_helpers import CLASSES, make_images

    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (img, y) in enumerate(zip(make_images(labels, seed=seed), labels)):
        img.save(folder / f"{i}.png")
        rows.append({"image": f"{i}.png", "caption": f"a photo of a {CLASSES[y]} square", "label": y})
    return rows


@pytest.fixture(scope="module")
def caption_folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("pairs")
    forget_rows = _write_images(root / "forget", [0] * 20, seed=11)
    with (root / "forget" / "captions.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["image", "caption", "label"])
        w.writeheader()
        w.writerows(forget_rows)
    retain_rows = _write_images(root / "retain", [1, 2, 3] * 6, seed=12)
    (root / "retain" / "captions.jsonl").write_text("\n".join(json.dumps(r) for r in retain_rows))
    return root / "forget", root / "retain" / "captions.jsonl"


def test_high_level_example_on_a_local_folder(clip_folder, caption_folders):
    forget, retain = caption_folders
    before = CLIPWrapper(clip_folder).state_dict()
    unlearner = erasus.ErasusUnlearner(model_name=clip_folder, strategy="modality_decoupling", selector="auto")
    assert isinstance(unlearner.model, CLIPWrapper) and unlearner.model.processor is not None
    unlearned = unlearner.fit(forget_data=forget, retain_data=retain, prune_ratio=0.1)
    assert isinstance(unlearned, CLIPWrapper) and unlearned is not unlearner.model
    assert len(unlearner.selection_) == 2  # 10 % of the 20 forget pairs
    after = unlearned.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert any(".text_model." in k for k in changed) and any(".vision_model." in k for k in changed)
    assert not any("logit_scale" in k for k in changed)
    for k, v in CLIPWrapper(clip_folder).state_dict().items():  # the saved checkpoint is untouched
        assert torch.equal(v, before[k])


def _mid_level(clip_folder, clip_data, *, depth, steps, **influence):
    _, forget_pairs, retain_pairs, test_pairs = clip_data
    clip = CLIPWrapper(clip_folder)
    loader = DataLoader(forget_pairs, batch_size=4)
    # scale above the largest Hessian eigenvalue of this tiny model (LiSSA diverges otherwise, and says so)
    sel = InfluenceSelector(approximation="lissa", scale=1e4, depth=depth, **influence).select(model=clip, data=loader,
                                                                                            k=4)
    assert len(sel) == 4 and len(set(sel.indices.tolist())) == 4
    forget_loader = DataLoader([forget_pairs[i] for i in sel.indices], batch_size=4)
    retain_loader = DataLoader(retain_pairs, batch_size=8, shuffle=True)
    strategy = ModalityDecouplingStrategy(vision_lr=1e-5, text_lr=1e-4)
    unlearned = strategy.unlearn(model=clip, forget_loader=forget_loader, retain_loader=retain_loader, steps=steps,
                                 progress=False)
    mia = erasus.get_metric("mia").compute(unlearned, forget_pairs, test_pairs)
    assert 0.0 <= mia["mia_accuracy"] <= 1.0 and 0.0 <= mia["mia_auc"] <= 1.0
    retrieval = erasus.get_metric("retrieval").compute(unlearned, forget_pairs)
    assert 0.0 <= retrieval["image_to_text_recall@1"] <= 1.0
    before = erasus.get_metric("retrieval").compute(clip, forget_pairs)
    # the forget pairs' own alignment went down; the retain pairs' stayed close
    cos = erasus.get_metric("pair_cosine")
    assert cos.compute(unlearned, forget=forget_pairs)["forget_pair_cosine"] < before["pair_cosine"]


def test_mid_level_example(clip_folder, clip_data):
    # the projections only: influence through every CLIP parameter takes a minute on two loaded cores
    _mid_level(clip_folder, clip_data, depth=5, steps=10, params=["model.visual_projection.weight", "model.text_projection.weight"])


@pytest.mark.slow
def test_mid_level_example_as_written(clip_folder, clip_data):
    _mid_level(clip_folder, clip_data, depth=1000, steps=100)


def test_call_shapes_from_the_issue(clip_data):
    model, forget, retain, _ = clip_data
    out = erasus.get_strategy("modality_decoupling", vision_lr=1e-3, text_lr=1e-3, alignment_weight=0.5).unlearn(
        model=model, forget_data=forget, retain_data=retain, steps=3, progress=False)
    assert out is not model and isinstance(out, type(model))
    got = erasus.get_metric("retrieval").compute(model, forget)
    assert "image_to_text_recall@1" in got


def test_a_datasets_dataset_as_forget_and_retain_data(clip_folder):
    """A real ``datasets.Dataset`` (an Image column of PIL images, a text column, labels) built offline is taken as
    forget_data / retain_data; the unlearned model is bit for bit the one the same records give as a list."""
    datasets = pytest.importorskip("datasets")
    from vlm_helpers import CLASSES, make_images

    def table(labels, seed):
        return {"image": make_images(labels, seed=seed), "text": [f"a photo of a {CLASSES[y]} square" for y in labels],
                "label": labels}

    forget_cols, retain_cols = table([0] * 8, 31), table([1, 2, 3] * 4, 32)
    forget_ds, retain_ds = datasets.Dataset.from_dict(forget_cols), datasets.Dataset.from_dict(retain_cols)
    assert isinstance(forget_ds.features["image"], datasets.Image)  # a real image column, decoded on access

    def records(cols):
        return [dict(zip(cols, row)) for row in zip(*cols.values())]

    def run(forget, retain):
        unlearner = erasus.ErasusUnlearner(model_name=clip_folder, strategy="modality_decoupling", selector="kcenter",
                                           vision_lr=1e-3, text_lr=1e-3, seed=0)
        model = unlearner.fit(forget_data=forget, retain_data=retain, prune_ratio=0.5, steps=3, progress=False)
        return unlearner, model

    via_ds, model_ds = run(forget_ds, retain_ds)
    via_list, model_list = run(records(forget_cols), records(retain_cols))
    assert len(via_ds.selection_) == 4
    assert via_ds.selection_.indices.tolist() == via_list.selection_.indices.tolist()
    ref = model_list.state_dict()
    got = model_ds.state_dict()
    assert all(torch.equal(got[k], ref[k]) for k in ref)
    start = CLIPWrapper(clip_folder).state_dict()
    assert any(not torch.equal(got[k], start[k]) for k in start)
