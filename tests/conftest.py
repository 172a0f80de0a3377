import pytest
import torch

from ficoco_edge.arch import load_arch
from ficoco_edge.models.build import random_llava


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_arch():
    return load_arch("tiny")


@pytest.fixture()
def tiny_llava(tiny_arch):
    """A fresh random-weight LLaVA with LLaVA-1.5 token geometry (576 patches) and tiny widths."""
    return random_llava(tiny_arch, seed=0)
