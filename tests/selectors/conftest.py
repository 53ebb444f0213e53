import pytest
import torch


@pytest.fixture(autouse=True)
def _single_torch_thread():
    """The selector tests use tiny models: intra-op threads only add synchronisation cost on shared cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
