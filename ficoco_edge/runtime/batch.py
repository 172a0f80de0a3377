"""Batch answering: a JSONL file of {"image", "question"} lines -> a JSONL file of answers.

A bad line (not JSON, missing fields, unreadable image, empty question) is reported and answered
with an "error" field; the other lines are still answered. The output is written to a temporary
sibling and renamed at the end, so an interrupted run leaves any previous output untouched.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ficoco_edge.errors import UsageError
from ficoco_edge.outputs import atomic_output, check_output


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
    check_requests(requests, out)
    failed, answered = [], 0
    with atomic_output(out) as sink, requests.open("rb") as source:
        for number, raw in enumerate(source, 1):
            row = _answer_line(raw, number, requests.parent, answer)
            if row is None:
                continue
            if "error" in row:
                failed.append((number, row["error"]))
                on_error(number, row["error"])
            else:
                answered += 1
            sink.write(json.dumps(row) + "\n")
    return BatchResult(answered, failed)


def check_requests(requests: Path, out: Path, *protected: Path) -> None:
    """Refuse a missing or unreadable requests file, and an --out that would replace it, an image
    it lists, or a file inside one of the `protected` directories (the export, the export cache)."""
    if not requests.exists():
        raise UsageError(f"batch file {requests} not found")
    if not requests.is_file():
        raise UsageError(f"batch file {requests} is not a file; pass a JSONL file of {{\"image\", \"question\"}} lines")
    check_output(out, requests, *_listed_images(requests))
    for directory in protected:
        if Path(out).resolve().is_relative_to(Path(directory).resolve()):
            raise UsageError(f"--out {out} lies inside {directory}; write the answers elsewhere")


def _listed_images(requests: Path) -> list[Path]:
    """The image paths of the requests file's readable lines (the others are reported later)."""
    images = []
    with requests.open("rb") as source:
        for raw in source:
            try:
                images.append(read_request(raw.decode("utf-8-sig"), requests.parent)[0])
            except (UsageError, UnicodeDecodeError):
                continue
    return images


def _answer_line(raw: bytes, number: int, base: Path, answer: Callable[[Path, str], dict]) -> dict | None:
    """One line -> its output row (with "error" when it could not be answered); None for a blank line.
    Anything that goes wrong answering one line is that line's error: the other lines still run."""
    try:
        line = raw.decode("utf-8-sig" if number == 1 else "utf-8")  # a BOM may open the file
    except UnicodeDecodeError:
        return {"line": number, "error": "not UTF-8 text"}
    if not line.strip():
        return None
    try:
        image, question = read_request(line, base)
        return {"line": number, "image": str(image), "question": question, **answer(image, question)}
    except UsageError as exc:
        return {"line": number, "error": str(exc)}
    except Exception as exc:  # noqa: BLE001 - one line's failure must not lose the others' answers
        return {"line": number, "error": f"failed: {type(exc).__name__}: {exc}"}
