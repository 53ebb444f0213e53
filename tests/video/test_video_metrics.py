"""video_accuracy (top-1 / top-5) against a brute-force per-clip ranking."""

from __future__ import annotations

import pytest
import torch

import erasus
from erasus.metrics import AccuracyMetric, VideoAccuracyMetric
from video_helpers import clips, tiny_videomae


def test_video_top1_and_top5_equal_a_per_clip_brute_force():
    model = tiny_videomae(seed=7, num_labels=8)
    items = clips(23, seed=4, classes=8)
    got = erasus.get_metric("video_accuracy").compute(model, forget=items[:9], test=items[9:])
    for split, part in (("forget", items[:9]), ("test", items[9:])):
        hits = {1: 0, 5: 0}
        for it in part:
            with torch.no_grad():
                z = model(pixel_values=it["pixel_values"][None]).logits[0].tolist()
            ranking = sorted(range(len(z)), key=lambda c: -z[c])
            for k in hits:
                hits[k] += int(int(it["labels"]) in ranking[:k])
        assert got[f"{split}_accuracy"] == pytest.approx(hits[1] / len(part))
        assert got[f"{split}_top5_accuracy"] == pytest.approx(hits[5] / len(part))
    assert set(got) == {"forget_accuracy", "forget_top5_accuracy", "test_accuracy", "test_top5_accuracy"}


def test_video_accuracy_extends_accuracy_and_refuses_k_above_the_class_count():
    assert issubclass(VideoAccuracyMetric, AccuracyMetric)
    assert VideoAccuracyMetric.group == "utility"
    with pytest.raises(erasus.InvalidInputError, match=r"k must be in \[1, 3\]"):
        erasus.get_metric("video_accuracy").compute(tiny_videomae(num_labels=3), test=clips(4, classes=3))
    three = erasus.get_metric("video_accuracy", topk=(1, 2)).compute(tiny_videomae(num_labels=3), test=clips(4, classes=3))
    assert set(three) == {"test_accuracy", "test_top2_accuracy"}
