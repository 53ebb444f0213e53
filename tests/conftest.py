"""Shared pytest setup: run Triton kernels in the CPU interpreter and skip GPU tests without CUDA."""

import os

# Must be set before triton (or any module that imports it) is first imported.
os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402


def pytest_collection_modifyitems(config, items):
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
