"""Shared pytest setup: Triton kernels run in the CPU interpreter, GPU tests skip without CUDA, torch on one thread."""

import os

# Must be set before triton (or any module that imports it) is first imported.
os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True, scope="session")
def _single_torch_thread():
    """The tests use tiny models: on two shared cores a second intra-op thread only adds synchronisation
    (measured: 3 s versus 22 s to train the digits CNN on a loaded machine). Session-scoped, so the
    session- and package-scoped fixtures that train the shared tiny models run on one thread too."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _no_thread_count_leaks():
    """A test that changes torch's thread count does not pass it on to the next one."""
    yield
    torch.set_num_threads(1)


def _fit_full_batch(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *, steps: int,
                    lr: float) -> torch.nn.Module:
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="session")
def fit_full_batch():
    """``fit(model, x, y, *, steps, lr) -> model.eval()``: full-batch Adam on cross-entropy, no randomness of its
    own (seed before building the model), so small fixtures train the same way wherever they are built."""
    return _fit_full_batch
