"""`ficoco-edge plan` / `methods` as a user runs them: figures against the paper's tables,
and the one-line error contract (exit code 2, valid choices listed, no traceback)."""

import csv
import json
from pathlib import Path

import pytest

from ficoco_edge.reduction.registry import METHODS
from tests.helpers import run_cli as run

PAPER = Path(__file__).resolve().parents[2].parent / "shared" / "reference" / "paper_tables.csv"


def plan_json(monkeypatch, capsys, *args):
    code, out, err = run(monkeypatch, capsys, "plan", "--format", "json", *args)
    assert code == 0, err
    return json.loads(out)


def paper_row(model, method, quant):
    if not PAPER.exists():
        pytest.skip(f"reference tables not found at {PAPER}")
    rows = [r for r in csv.DictReader(line for line in PAPER.open() if not line.startswith("#"))]
    return next(r for r in rows if (r["model"], r["method"], r["quant"]) == (model, method, quant))


@pytest.mark.parametrize(
    "args, paper, expected",
    [
        (("--model", "llava-1.5-7b", "--method", "none"), ("llava-1.5-7b", "none", "fp16"), (8.45, 22.2, 333.4)),
        (("--model", "llava-1.5-7b", "--method", "none", "--quant", "int8"), ("llava-1.5-7b", "none", "int8"), (None, 11.1, 166.7)),
        (("--model", "llava-1.5-13b", "--method", "none", "--text-tokens", "512"), ("llava-1.5-13b", "none", "fp16"), (28.6, 56.05, 891.3)),
        (("--model", "llava-1.5-7b", "--method", "ficoco-v", "--keep", "64"), ("llava-1.5-7b", "ficoco-v", "fp16"), (1.615, 14.45, 65.0)),
    ],
)
def test_plan_reproduces_paper_tables(monkeypatch, capsys, args, paper, expected):
    result = plan_json(monkeypatch, capsys, *args)
    row = paper_row(*paper)
    for key, column, value in zip(("tflops", "memory_access_gb", "kv_cache_mb"),
                                  ("formula_tflops", "formula_memory_gb", "formula_kv_mb"), expected):
        assert result[key] == pytest.approx(float(row[column]), rel=0.01)
        if value is not None:
            assert result[key] == pytest.approx(value, rel=0.01)
    for key in ("model", "method", "quant", "budget_tflops", "visual_tokens_in", "visual_tokens_out",
                "llm_tokens_per_layer", "physical"):
        assert key in result


@pytest.mark.parametrize("method", ["ficoco-v", "ficoco-l", "ficoco-vl"])
@pytest.mark.parametrize("budget", [4.2, 3.3, 2.4, 1.5])
def test_planned_cost_is_under_budget(monkeypatch, capsys, method, budget):
    result = plan_json(monkeypatch, capsys, "--method", method, "--budget", str(budget))
    assert result["tflops"] <= budget
    assert result["visual_tokens_out"] < 576
    assert len(result["llm_tokens_per_layer"]) == 32
    assert result["physical"]["total_tflops"] > result["physical"]["llm_tflops"]


@pytest.mark.parametrize(
    "args, needle",
    [
        (("plan", "--method", "nope"), "ficoco-v, ficoco-l"),
        (("plan", "--model", "nope"), "llava-1.5-7b"),
        (("plan", "--method", "ficoco-v", "--budget", "0.1"), "valid range"),
        (("plan", "--method", "ficoco-v", "--budget", "20"), "valid range"),
        (("plan", "--method", "ficoco-v", "--keep", "-1"), "--keep"),
        (("plan", "--quant", "int3"), "fp16, int8, int4"),
        (("plan", "--format", "xml"), "table, json"),
        (("plan", "--method", "ficoco-v", "--budget", "nan"), "not a number"),
        (("plan", "--budget", "abc"), "plan --help"),  # typer's own parse errors, one line too
        (("plan", "--no-such-flag"), "No such option"),
        (("no-such-command",), "No such command"),
        # refused before any export is loaded or benchmark row measured
        (("run", "--out", "a.jsonl", "examples/red-triangle.png", "What?"), "--out is for --batch"),
        (("run", "examples/red-triangle.png", "What?", "--threads", "100000"), "--threads must be between"),
        (("run", "examples/red-triangle.png", "What?", "--memory-limit", "nan"), "--memory-limit"),
        (("run", "--batch", "examples", "--out", "a.jsonl"), "is not a file"),
        (("bench", "--image", "examples/README.md"), "not an image"),
        (("bench", "--question", " "), "empty"),
        (("bench", "--out", "examples"), "is a directory"),
        (("profile", "--budget", "2.4", "--keep", "10"), "not both"),
        (("profile", "--save", "examples/"), "path prefix"),
        (("profile", "--plot", "examples"), "ending in .png"),
        (("plan", "--model", "examples/red-triangle.png"), "cannot read architecture profile"),
        (("eval", "--dataset", "examples/README.md", "--out", "examples/README.md"), "also an input file"),
        (("export", "--keep", "20", "--out", "examples", "--force"), "not an export"),
        (("export", "--keep", "20", "--model", "/no/such/dir"), "not found"),
        (("plan", "--method", "ficoco-v", "--budget", "1.5", "--text-tokens", "99999999999"), "between 1 and"),
        (("profile", "--text-tokens", "99999999999"), "--text-tokens must be <="),
        (("profile", "--context", "99999999999"), "--context must be <="),
    ],
)
def test_bad_input_is_one_line_exit_2(monkeypatch, capsys, args, needle):
    code, out, err = run(monkeypatch, capsys, *args)
    assert code == 2
    assert needle in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_methods_lists_every_registered_method(monkeypatch, capsys):
    code, out, _ = run(monkeypatch, capsys, "methods")
    assert code == 0
    assert [line.split()[0] for line in out.strip().splitlines()] == list(METHODS)


@pytest.mark.parametrize("line, needle", [("layers = 4", "at most 4096 layers"), ("vocab = 1000", "at most 16777216")])
def test_absurd_architecture_sizes_are_refused(monkeypatch, capsys, tmp_path, line, needle):
    """A profile whose sizes would make per-layer tables exhaust memory is refused, not computed."""
    text = (Path(__file__).parents[2] / "profiles" / "models" / "tiny.toml").read_text()
    assert line in text
    profile = tmp_path / "huge.toml"
    profile.write_text(text.replace(line, line.split("=")[0] + f"= {2 ** 63 - 1}", 1))
    code, _, err = run(monkeypatch, capsys, "plan", "--model", str(profile), "--method", "ficoco-v", "--budget", "1.5")
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1


def test_batch_out_never_replaces_an_input_or_an_export(monkeypatch, capsys, tmp_path):
    """--out naming an image the batch lists, or a file inside --export or the export cache, is
    refused before anything runs, and the file is left as it was."""
    monkeypatch.setenv("FICOCO_EDGE_CACHE", str(tmp_path / "cache"))
    image, export = tmp_path / "img.png", tmp_path / "export"
    image.write_bytes(b"an image the batch reads")
    export.mkdir()
    (export / "manifest.json").write_text("{}")
    batch = tmp_path / "b.jsonl"
    batch.write_text('{"image": "img.png", "question": "What?"}\nnot json\n')
    for out, needle in ((image, "also an input file"), (export / "manifest.json", "lies inside"),
                        (tmp_path / "cache" / "exports" / "a.jsonl", "lies inside")):
        code, _, err = run(monkeypatch, capsys, "run", "--batch", str(batch), "--out", str(out), "--export", str(export))
        assert code == 2 and needle in err, err
    assert image.read_bytes() == b"an image the batch reads" and (export / "manifest.json").read_text() == "{}"
