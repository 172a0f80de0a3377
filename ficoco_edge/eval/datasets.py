"""VQA samples: the easy-VQA package's splits, or a user's JSONL file.

JSONL lines are `{"image": path, "question": ..., "answer": ...}`; relative image paths are read
relative to the JSONL file.
"""

from __future__ import annotations

import importlib.util
import json
import random
from dataclasses import dataclass
from pathlib import Path

from ficoco_edge.errors import UsageError

SPLITS = ("train", "test")
EASY_VQA_HINT = "install it with `pip install --no-deps easy-vqa`"


@dataclass(frozen=True)
class Sample:
    image: Path
    question: str
    answer: str


def easy_vqa_dir() -> Path:
    """The easy-VQA package's data directory, located without importing the package."""
    spec = importlib.util.find_spec("easy_vqa")
    if spec is None or not spec.submodule_search_locations:
        raise UsageError(f"the easy-vqa dataset is not installed; {EASY_VQA_HINT}")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def easy_vqa(split: str) -> list[Sample]:
    """All questions of an easy-VQA split, in the package's order."""
    if split not in SPLITS:
        raise UsageError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}")
    root = easy_vqa_dir() / split
    rows = json.loads((root / "questions.json").read_text())
    return [Sample(root / "images" / f"{image_id}.png", question, answer) for question, answer, image_id in rows]


def easy_vqa_answers() -> list[str]:
    return (easy_vqa_dir() / "answers.txt").read_text().split()


def jsonl(path: Path, answers: bool = True) -> list[Sample]:
    """Samples from a JSONL file; a malformed line is an error naming the line. answers=False: the
    "answer" field may be left out (prompts only, e.g. for calibration; answer "")."""
    samples = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            image, question = Path(row["image"]), str(row["question"])
            answer = str(row["answer"]) if answers or "answer" in row else ""
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            fields = '"image", "question", "answer"' if answers else '"image", "question"'
            raise UsageError(f"{path}:{n}: expected {{{fields}}} ({exc})") from exc
        samples.append(Sample(image if image.is_absolute() else path.parent / image, question, answer))
    if not samples:
        raise UsageError(f"{path} holds no samples")
    return samples


def load_samples(dataset: str, split: str = "test", limit: int | None = None, seed: int = 0,
                 answers: bool = True) -> list[Sample]:
    """`dataset` is "easy-vqa" or a .jsonl path; `limit` takes a seeded random subset; answers=False:
    a .jsonl's lines need no "answer"."""
    if dataset == "easy-vqa":
        samples = easy_vqa(split)
    elif Path(dataset).suffix == ".jsonl":
        if not Path(dataset).is_file():
            raise UsageError(f"dataset file {dataset} not found")
        samples = jsonl(Path(dataset), answers)
    else:
        raise UsageError(f"unknown dataset {dataset!r}: use 'easy-vqa' or a .jsonl file")
    if limit is not None:
        if limit < 1:
            raise UsageError(f"--limit must be >= 1, got {limit}")
        if limit < len(samples):
            picked = sorted(random.Random(seed).sample(range(len(samples)), limit))
            samples = [samples[i] for i in picked]
    return samples


def normalize_answer(text: str) -> str:
    """First word, lower-cased, punctuation stripped: 'Blue.' -> 'blue'."""
    words = text.strip().lower().split()
    return words[0].strip(".,!?;:'\"()") if words else ""
