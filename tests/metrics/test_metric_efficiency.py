"""Efficiency tracking: FLOPs by torch's counter, peak RSS of the wrapped call."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from erasus.metrics import EfficiencyMetric, track_efficiency


@pytest.mark.parametrize("batch,d_in,d_out", [(8, 16, 4), (32, 64, 10)])
def test_linear_layer_flops_are_two_b_in_out(batch, d_in, d_out):
    layer = torch.nn.Linear(d_in, d_out)
    with track_efficiency() as cost:
        layer(torch.randn(batch, d_in))
    assert cost.result["flops"] == 2 * batch * d_in * d_out
    assert cost.result["wall_time_s"] >= 0.0


def test_backward_is_counted_too():
    layer = torch.nn.Linear(16, 4, bias=False)
    with track_efficiency() as cost:
        layer(torch.randn(8, 16, requires_grad=True)).sum().backward()
    # forward x W^T, backward grad_x = g W and grad_W = g^T x: three matmuls of 2*8*16*4
    assert cost.result["flops"] == 3 * 2 * 8 * 16 * 4


def test_peak_rss_sees_an_allocation_inside_the_block():
    with track_efficiency(flops=False) as small:
        pass
    with track_efficiency(flops=False) as big:
        block = np.ones(64 * 2**20 // 8)  # 64 MiB, touched
        del block
    if small.peak_rss_scope == "call":
        assert big.result["peak_rss_mb"] - small.result["peak_rss_mb"] > 48
    assert "flops" not in big.result


def test_efficiency_metric_measures_fn_or_an_inference_pass(digits, original):
    n = digits.forget[0].shape[0]
    out = EfficiencyMetric().compute(original, digits.forget)
    assert out["flops"] == 2 * n * (64 * 64 + 64 * 10)
    seen = []
    out = EfficiencyMetric(fn=seen.append, flops=False).compute(original)
    assert seen == [original] and set(out) >= {"wall_time_s", "peak_rss_mb"}
