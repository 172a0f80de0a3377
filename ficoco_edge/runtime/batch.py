"""Batch answering: a JSONL file of {"image", "question"} lines -> a JSONL file of answers.

A bad line (not JSON, missing fields, unreadable image, empty question) is reported and answered
with an "error" field; the other lines are still answered. The output is written to a temporary
sibling and renamed at the end, so an interrupted run leaves any previous output untouched.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ficoco_edge.errors import UsageError


@dataclass
class BatchResult:
    answered: int
    failed: list[tuple[int, str]]  # (line number, error)


def read_request(line: str, base: Path) -> tuple[Path, str]:
    """One JSONL line -> (image path, question); relative image paths are relative to `base`."""
    try:
        item = json.loads(line)
    except json.JSONDecodeError as exc:
        raise UsageError(f"not JSON ({exc.msg})") from None
    if not isinstance(item, dict) or not isinstance(item.get("image"), str) or not isinstance(item.get("question"), str):
        raise UsageError('expected an object with string fields "image" and "question"')
    image = Path(item["image"]).expanduser()
    return (image if image.is_absolute() else base / image), item["question"]


def answer_file(requests: Path, out: Path, answer: Callable[[Path, str], dict],
                on_error: Callable[[int, str], None]) -> BatchResult:
    """Answer every line of `requests` with answer(image, question) -> dict of output fields."""
    if not requests.is_file():
        raise UsageError(f"batch file {requests} not found")
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    failed, answered = [], 0
    try:
        with os.fdopen(fd, "w") as sink, requests.open() as source:
            for number, line in enumerate(source, 1):
                if not line.strip():
                    continue
                row = _answer_line(line, number, requests.parent, answer)
                if "error" in row:
                    failed.append((number, row["error"]))
                    on_error(number, row["error"])
                else:
                    answered += 1
                sink.write(json.dumps(row) + "\n")
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return BatchResult(answered, failed)


def _answer_line(line: str, number: int, base: Path, answer: Callable[[Path, str], dict]) -> dict:
    try:
        image, question = read_request(line, base)
        return {"line": number, "image": str(image), "question": question, **answer(image, question)}
    except UsageError as exc:
        return {"line": number, "error": str(exc)}
