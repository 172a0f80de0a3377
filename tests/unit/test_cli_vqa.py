"""`eval` (and `run`'s checks before any export loads) reject bad input with one line and exit code 2, before any model loads."""

import pytest

from tests.helpers import run_cli


@pytest.mark.parametrize("args, message", [
    (["run", "nope.png", "what?"], "not found"),
    (["run", "examples", "what?"], "not a file"),
    (["run", "examples/red-triangle.png", "   "], "question is empty"),
    (["run", "examples/red-triangle.png", "what?", "--max-new-tokens", "0"], "--max-new-tokens"),
    (["run", "examples/red-triangle.png", "what?", "--method", "magic"], "unknown method"),
    (["run", "examples/red-triangle.png", "what?", "--dtype", "int3"], "--dtype from"),
    (["run", "examples/red-triangle.png", "what?", "--backend", "tpu"], "--backend from"),
    (["run", "examples/red-triangle.png", "what?", "--temperature", "-1"], "--temperature"),
    (["run", "examples/red-triangle.png", "what?", "--top-p", "2"], "--top-p"),
    (["run", "examples/red-triangle.png", "what?", "--quant", "int2"], "unknown quant"),
    (["run", "examples/red-triangle.png", "x" * 2001], "at most 2000"),
    (["run", "examples/red-triangle.png"], "give an IMAGE and a QUESTION"),
    (["run", "--batch", "q.jsonl"], "needs --out"),
    (["run", "examples/red-triangle.png", "what?", "--export", "no/such/export"], "not found"),
    (["run", "examples/red-triangle.png", "what?", "--model", "no/such/thing"], "unknown model"),
    (["bench", "--budgets", "none,lots"], "not a number"),
    (["bench", "--format", "xml"], "unknown format"),
    (["bench", "--repeats", "0"], "--repeats"),
    (["bench", "--rounds", "0"], "--rounds"),
    (["eval", "--methods", "none,magic"], "unknown method"),
    (["eval", "--budgets", "1.5,lots"], "not a number"),
    (["eval", "--budgets", ","], "comma-separated"),
    (["eval", "--dataset", "coco"], "unknown dataset"),
    (["eval", "--format", "xml"], "unknown format"),
    (["eval", "--batch-size", "0"], "--batch-size"),
])
def test_bad_input_is_one_line(monkeypatch, capsys, args, message):
    code, out, err = run_cli(monkeypatch, capsys, *args)
    assert code == 2, (out, err)
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_not_an_image(monkeypatch, capsys, tmp_path):
    (tmp_path / "x.png").write_text("text")
    code, _, err = run_cli(monkeypatch, capsys, "run", str(tmp_path / "x.png"), "what?")
    assert code == 2 and "not an image" in err


@pytest.mark.parametrize("config, needle", [(None, "has no config.json"),
                                            ('{"model_type": "llama"}', "config.json has model_type 'llama', not 'llava'"),
                                            ('{"model_type": "llava"}', "could not load a LLaVA checkpoint"),
                                            ("[1", "cannot read")])
def test_directory_without_a_checkpoint(monkeypatch, capsys, tmp_path, config, needle):
    if config is not None:
        (tmp_path / "config.json").write_text(config)
    code, _, err = run_cli(monkeypatch, capsys, "run", "examples/red-triangle.png", "what?", "--model", str(tmp_path))
    assert code == 2 and needle in err and "hf download" in err and len(err.strip().splitlines()) == 1
