import importlib
import os
import sys

import pytest
import torch


@pytest.fixture(autouse=True)
def _single_torch_thread():
    """The selector tests use tiny models: intra-op threads only add synchronisation cost on shared cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def transformers_lib():
    """transformers, first imported with the repo root off sys.path: under ``python -m pytest`` the top-level
    ``kernels`` link (to erasus.kernels) would shadow the hub ``kernels`` package transformers probes."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    saved = list(sys.path)
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != root]
    try:
        transformers = pytest.importorskip("transformers")
        importlib.import_module("transformers.activations")
    finally:
        sys.path[:] = saved
    return transformers
