"""The tiny Stable Diffusion pipeline every diffusion test shares, built offline as a new user would build it."""

import pytest

pytest.importorskip("diffusers", reason="the diffusion tests need the 'diffusion' extra (diffusers)")

from erasus.models import StableDiffusionWrapper, tiny_pipeline  # noqa: E402


@pytest.fixture(scope="session")
def tiny_pipe():
    return tiny_pipeline(seed=0)


@pytest.fixture(scope="session")
def tiny_path(tiny_pipe, tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny_sd")
    tiny_pipe.save_pretrained(path)
    return path


@pytest.fixture()
def wrapper(tiny_pipe):
    return StableDiffusionWrapper(tiny_pipe)
