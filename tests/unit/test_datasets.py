"""VQA datasets: JSONL parsing and errors, easy-VQA splits and seeded subsets, [CLS] labels."""

import importlib.util
import json

import pytest

from ficoco_edge.errors import UsageError
from ficoco_edge.eval.datasets import easy_vqa, load_samples
from ficoco_edge.training.data import COLOURS, IGNORE, SHAPES, image_labels

needs_easy_vqa = pytest.mark.skipif(importlib.util.find_spec("easy_vqa") is None,
                                    reason="pip install --no-deps easy-vqa")


def test_jsonl_resolves_relative_images(tmp_path):
    lines = [{"image": "a.png", "question": "q1?", "answer": "yes"},
             {"image": str(tmp_path / "sub" / "b.png"), "question": "q2?", "answer": "red"}]
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in lines) + "\n\n")
    samples = load_samples(str(path))
    assert [s.image for s in samples] == [tmp_path / "a.png", tmp_path / "sub" / "b.png"]
    assert [(s.question, s.answer) for s in samples] == [("q1?", "yes"), ("q2?", "red")]


@pytest.mark.parametrize("content, message", [
    ('{"image": "a.png", "question": "q"}\n', ":1: expected"),
    ('{"image": "a.png", "question": "q", "answer": "a"}\nnot json\n', ":2: expected"),
    ("\n", "holds no samples"),
])
def test_jsonl_errors_name_the_line(tmp_path, content, message):
    path = tmp_path / "d.jsonl"
    path.write_text(content)
    with pytest.raises(UsageError, match=message):
        load_samples(str(path))


def test_prompts_without_answers(tmp_path):
    path = tmp_path / "prompts.jsonl"
    path.write_text('{"image": "a.png", "question": "q1?"}\n{"image": "b.png", "question": "q2?", "answer": "red"}\n')
    samples = load_samples(str(path), answers=False)
    assert [(s.image.name, s.question, s.answer) for s in samples] == [("a.png", "q1?", ""), ("b.png", "q2?", "red")]
    path.write_text('{"image": "a.png"}\n')
    with pytest.raises(UsageError, match='1: expected {"image", "question"}'):
        load_samples(str(path), answers=False)


def test_unknown_dataset_and_bad_limit(tmp_path):
    with pytest.raises(UsageError, match="unknown dataset"):
        load_samples("coco")
    with pytest.raises(UsageError, match="not found"):
        load_samples(str(tmp_path / "none.jsonl"))
    path = tmp_path / "d.jsonl"
    path.write_text('{"image": "a.png", "question": "q", "answer": "a"}\n')
    with pytest.raises(UsageError, match="--limit"):
        load_samples(str(path), limit=0)


@needs_easy_vqa
def test_easy_vqa_splits_and_seeded_subsets():
    test = easy_vqa("test")
    assert len(test) == 9673 and all(s.image.is_file() for s in test[:20])
    a, b = load_samples("easy-vqa", "test", limit=50), load_samples("easy-vqa", "test", limit=50)
    assert a == b and len(set(a)) == 50 and set(a) <= set(test)
    assert load_samples("easy-vqa", "test", limit=50, seed=1) != a
    with pytest.raises(UsageError, match="unknown split"):
        easy_vqa("val")


@needs_easy_vqa
def test_cls_labels_agree_with_every_question():
    """Labels read off a few answers must make every other question of the split true."""
    samples = easy_vqa("train")
    paths = list(dict.fromkeys(s.image for s in samples))
    shape, colour = image_labels(samples, paths)
    index = {p: i for i, p in enumerate(paths)}
    assert (shape != IGNORE).float().mean() > 0.9 and (colour != IGNORE).float().mean() > 0.9
    for s in samples:
        i = index[s.image]
        truth = {SHAPES[shape[i]] if shape[i] != IGNORE else None, COLOURS[colour[i]] if colour[i] != IGNORE else None}
        if s.question.startswith("what"):
            assert s.answer in truth or None in truth
            continue
        word = next(w for w in s.question.rstrip("?").split() if w in SHAPES or w in COLOURS)
        known = (shape[i] if word in SHAPES else colour[i]) != IGNORE
        negated = " not " in f" {s.question} " or " no " in f" {s.question} "
        if known:
            assert (word in truth) == ((s.answer == "yes") != negated), s
