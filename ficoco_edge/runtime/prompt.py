"""Prompt templates with an image span, shared by the PyTorch path and the runtime (no torch).

A template is text with one `<image>` marker and one `{question}` field. The image marker becomes
`n` copies of the model's image-token id, so the span's length is whatever the reduction leaves
(576 unreduced; fewer after FiCoCo-V). Text on each side is tokenized separately so no merge
across the span can happen.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ficoco_edge.errors import UsageError

IMAGE_MARKER = "<image>"
MAX_QUESTION_CHARS = 2000


@dataclass(frozen=True)
class PromptFormat:
    """template: text with one `<image>` and one `{question}`; stop_ids: tokens that end an answer;
    pad_id: filler for left-padded batches (masked out)."""

    template: str
    image_token_id: int
    stop_ids: tuple[int, ...]
    pad_id: int
    bos_token_id: int | None = None

    def __post_init__(self) -> None:
        if self.template.count(IMAGE_MARKER) != 1 or self.template.count("{question}") != 1:
            raise ValueError(f"a prompt template needs one {IMAGE_MARKER} and one {{question}}: {self.template!r}")
        if not self.stop_ids:
            raise ValueError("a prompt format needs at least one stop token id")

    def ids(self, encode: Callable[[str], list[int]], question: str, image_tokens: int) -> list[int]:
        """Token ids of the prompt for `question` with an image span of `image_tokens` tokens.

        `encode` maps text to ids without adding special tokens of its own.
        """
        before, after = self.template.format(question=question.strip()).split(IMAGE_MARKER)
        head = [self.bos_token_id] if self.bos_token_id is not None else []
        return head + encode(before) + [self.image_token_id] * image_tokens + encode(after)

    def image_span(self, ids: list[int]) -> tuple[int, int]:
        """(start, end) of the image span in `ids`."""
        at = [i for i, t in enumerate(ids) if t == self.image_token_id]
        return at[0], at[-1] + 1


def check_question(question: str) -> None:
    """Refuse an empty, over-long or non-UTF-8 question, or one holding the template's image marker."""
    if not question.strip():
        raise UsageError("the question is empty; ask something about the image")
    if len(question) > MAX_QUESTION_CHARS:
        raise UsageError(f"the question has {len(question)} characters; at most {MAX_QUESTION_CHARS}")
    try:
        question.encode("utf-8")  # undecodable command-line bytes arrive as lone surrogates
    except UnicodeEncodeError:
        raise UsageError("the question is not valid UTF-8 text; check the terminal's encoding") from None
    if IMAGE_MARKER in question:
        raise UsageError(f"the question contains {IMAGE_MARKER}, the prompt's image placeholder; the image is "
                         f"already in the prompt: remove it from the question")
