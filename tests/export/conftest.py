"""Fixtures for export tests: a tiny random LLaVA wrapped as a VisionLanguageModel."""

import pytest

from ficoco_edge.models import embedded
from ficoco_edge.models.vqa import VisionLanguageModel
from ficoco_edge.plan import solve_for_method
from ficoco_edge.runtime.preprocess import ClipPreprocess

METHODS = ["none", "ficoco-v", "ficoco-l", "ficoco-vl"]


class TinyTokenizer:
    """Just enough of a tokenizer for export: characters as ids below the tiny vocabulary."""

    def encode(self, text, add_special_tokens=False):
        return [ord(c) % 900 + 50 for c in text]

    def save_pretrained(self, directory):
        directory.mkdir()
        (directory / "tokenizer.json").write_text("{}")


@pytest.fixture()
def tiny_vlm(tiny_llava):
    return VisionLanguageModel("tiny", tiny_llava, TinyTokenizer(), ClipPreprocess(), embedded.PROMPT)


def schedule_for(method):
    return solve_for_method(method, 1.5) if method != "none" else solve_for_method("none")
