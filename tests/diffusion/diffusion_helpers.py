"""Helpers shared by the diffusion tests."""

import torch

FORGET = ["a photo of a dress"]
RETAIN = ["a photo of a shirt", "a photo of a bag", "a photo of a sneaker"]


def state_of(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def assert_same_state(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
