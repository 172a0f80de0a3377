"""Output files: checked before work starts, replaced whole or not at all, permissions kept;
batch mode answers every line it can whatever goes wrong on the others."""

import json
import os
import stat

import pytest

from ficoco_edge.errors import UsageError
from ficoco_edge.outputs import atomic_output, check_output
from ficoco_edge.runtime.batch import answer_file


def test_bad_output_paths_are_refused(tmp_path):
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(UsageError, match="is a directory"):
        check_output(tmp_path)
    with pytest.raises(UsageError, match="a-file is a file"):
        check_output(tmp_path / "a-file" / "deeper" / "out.json")
    with pytest.raises(UsageError, match="also an input file"):
        check_output(tmp_path / "a-file", tmp_path / "." / "a-file")
    check_output(tmp_path / "new" / "dirs" / "out.json")  # parents are created when written


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "out.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_output(target) as sink:
            sink.write("half")
            raise RuntimeError("interrupted")
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["out.json"]


def test_replaced_file_keeps_its_mode_and_new_files_follow_the_umask(tmp_path):
    target = tmp_path / "out.json"
    target.write_text("old")
    target.chmod(0o640)
    with atomic_output(target) as sink:
        sink.write("new")
    assert target.read_text() == "new" and stat.S_IMODE(target.stat().st_mode) == 0o640
    umask = os.umask(0o022)
    try:
        with atomic_output(tmp_path / "fresh.json") as sink:
            sink.write("x")
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "fresh.json").stat().st_mode) == 0o644


def test_batch_reports_bad_bytes_and_failures_and_answers_the_rest(tmp_path):
    """Undecodable bytes, a BOM, and an unexpected exception from one answer each cost only their line."""
    good = json.dumps({"image": "a.png", "question": "fine?"}).encode()
    boom = json.dumps({"image": "a.png", "question": "boom"}).encode()
    (tmp_path / "q.jsonl").write_bytes(b"\xef\xbb\xbf" + good + b"\n\xff\xfe\n\n" + boom + b"\n" + good + b"\n")

    def answer(image, question):
        if question == "boom":
            raise MemoryError("out of memory")
        return {"answer": question.upper()}

    errors = []
    result = answer_file(tmp_path / "q.jsonl", tmp_path / "out.jsonl", answer, lambda n, e: errors.append((n, e)))
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["line"] for r in rows] == [1, 2, 4, 5] and result.answered == 2
    assert rows[0]["answer"] == rows[3]["answer"] == "FINE?"
    assert errors == [(2, "not UTF-8 text"), (4, "failed: MemoryError: out of memory")]


def test_batch_refuses_to_overwrite_its_own_input(tmp_path):
    requests = tmp_path / "q.jsonl"
    requests.write_text(json.dumps({"image": "a.png", "question": "q"}) + "\n")
    with pytest.raises(UsageError, match="also an input file"):
        answer_file(requests, requests, lambda i, q: {}, lambda n, e: None)
    with pytest.raises(UsageError, match="not a file"):
        answer_file(tmp_path, tmp_path / "out.jsonl", lambda i, q: {}, lambda n, e: None)
    assert requests.read_text().startswith("{")
