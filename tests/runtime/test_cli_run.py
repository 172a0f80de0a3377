"""`ficoco-edge run` on an export: one answer, batch mode past bad lines, refused bad exports."""

import json
from pathlib import Path

from tests.helpers import copy_export, run_cli
from tests.runtime.conftest import needs_embedded

pytestmark = needs_embedded


def test_run_with_an_export(monkeypatch, capsys, embedded_exports):
    code, out, err = run_cli(monkeypatch, capsys, "run", "examples/red-triangle.png", "What color is the shape?",
                             "--export", str(embedded_exports["none"]), "--max-new-tokens", "8")
    assert code == 0, err
    assert out.strip() == "red" and "TTFT" in err and "KV" in err


def test_separate_llm_sessions(monkeypatch, capsys, embedded_exports):
    from ficoco_edge.runtime import Runtime

    opened, load = [], Runtime.load.__func__

    def recording_load(cls, *args, **kwargs):
        runtime = load(cls, *args, **kwargs)
        opened.append(sorted(runtime.backend.sessions))
        return runtime

    monkeypatch.setattr(Runtime, "load", classmethod(recording_load))
    answers = []
    for flags in ([], ["--separate-llm-sessions"]):
        code, out, err = run_cli(monkeypatch, capsys, "run", "examples/blue-circle.png", "What shape is in the image?",
                                 "--export", str(embedded_exports["ficoco-v"]), "--max-new-tokens", "8", *flags)
        assert code == 0, err
        answers.append(out.strip())
    assert opened == [["llm", "vision"], ["decode", "prefill", "vision"]]
    assert answers[0] == answers[1] != ""


def test_batch_answers_the_good_lines_and_reports_the_bad(monkeypatch, capsys, embedded_exports, tmp_path):
    (tmp_path / "not-an-image.png").write_text("hello")
    lines = [json.dumps({"image": "/work/nowhere.png", "question": "x"}),
             json.dumps({"image": str(Path("examples/red-triangle.png").resolve()),
                         "question": "What color is the shape?"}),
             "{not json",
             json.dumps({"image": "not-an-image.png", "question": "What color?"}),
             json.dumps({"image": "not-an-image.png"}),
             json.dumps({"image": str(Path("examples/blue-circle.png").resolve()),
                         "question": "  "})]
    (tmp_path / "q.jsonl").write_text("\n".join(lines) + "\n")
    out_file = tmp_path / "answers.jsonl"
    out_file.write_text("previous answers\n")
    code, out, err = run_cli(monkeypatch, capsys, "run", "--batch", str(tmp_path / "q.jsonl"), "--out", str(out_file),
                             "--export", str(embedded_exports["none"]), "--max-new-tokens", "8")
    assert code == 1 and json.loads(out) == {"answered": 1, "failed": 5, "out": str(out_file)}
    rows = [json.loads(line) for line in out_file.read_text().splitlines()]
    assert [r["line"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert rows[1]["answer"] == "red" and rows[1]["kv_bytes"] > 0
    assert [("error" in r) for r in rows] == [True, False, True, True, True, True]
    assert "not found" in rows[0]["error"] and "not JSON" in rows[2]["error"]
    assert "not an image" in rows[3]["error"] and '"question"' in rows[4]["error"] and "empty" in rows[5]["error"]
    assert len([line for line in err.splitlines() if "q.jsonl:" in line]) == 5 and "Traceback" not in err


def test_corrupted_export_is_one_line(monkeypatch, capsys, embedded_exports, tmp_path):
    copy = tmp_path / "copy"
    copy_export(embedded_exports["none"], copy, edited=["vision.onnx"])
    (copy / "vision.onnx").write_bytes(b"garbage")
    code, _, err = run_cli(monkeypatch, capsys, "run", "examples/red-triangle.png", "What?", "--export", str(copy))
    assert code == 2 and "sha256" in err and len(err.strip().splitlines()) == 1


def test_bench_worker_row(embedded_exports):
    """One benchmark row measured in a fresh process: fields present, KV bytes as the runtime allocates."""
    import subprocess
    import sys

    from ficoco_edge.runtime import Runtime

    job = {"backend": "ort", "export": str(embedded_exports["ficoco-v"]), "image": "examples/red-triangle.png",
           "question": "What color is the shape?", "decode_tokens": 3, "repeats": 1}
    done = subprocess.run([sys.executable, "-m", "ficoco_edge.bench_worker", json.dumps(job)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    row = json.loads(done.stdout)
    runtime = Runtime.load(embedded_exports["ficoco-v"], device="cpu")
    assert row["kv_bytes"] == runtime.kv_bytes(row["text_tokens"], 4)
    assert row["ttft_ms"] > row["prefill_ms"] > 0 and row["vision_ms"] > 0 and row["decode_tok_s"] > 0
    assert 100 < row["peak_rss_mb"] < 4000


def test_eval_of_an_export_through_the_runtime(monkeypatch, capsys, embedded_exports):
    code, out, err = run_cli(monkeypatch, capsys, "eval", "--exports", str(embedded_exports["none"]), "--limit", "8",
                             "--no-progress", "--format", "json")
    assert code == 0, err
    [row] = json.loads(out)
    assert (row["method"], row["quant"], row["visual_tokens"], row["n"]) == ("none", "fp32", 576, 8)
    assert row["accuracy"] >= 0.75  # the unreduced embedded model answers ~99% of easy-VQA


def test_run_with_no_flags_creates_the_default_export_once(monkeypatch, capsys, tmp_path):
    from ficoco_edge.export.cli import _stale

    monkeypatch.setenv("FICOCO_EDGE_CACHE", str(tmp_path))
    args = ("run", "examples/red-triangle.png", "What color is the shape?")
    code, out, err = run_cli(monkeypatch, capsys, *args)
    assert code == 0 and out.strip() == "red" and "creating" in err, err
    (cached,) = (tmp_path / "exports").iterdir()
    assert cached.name == "embedded-ficoco-l-b4.2-fp32" and not _stale(cached, "embedded")
    assert _stale(cached, "/elsewhere/embedded")  # another model of that name: made anew, never reused
    code, out, err = run_cli(monkeypatch, capsys, *args)
    assert code == 0 and out.strip() == "red" and "creating" not in err  # reused
    manifest = json.loads((cached / "manifest.json").read_text())
    (cached / "manifest.json").write_text(json.dumps({**manifest, "tool_version": "0.0.1"}))
    assert _stale(cached, "embedded")  # made by another version: `run` would make it again
    (cached / "manifest.json").write_text("{broken")
    assert _stale(cached, "embedded")
