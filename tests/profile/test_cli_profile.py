"""`ficoco-edge profile` as a user runs it: reports, files, and one-line errors."""

import json

import pytest
import torch

from tests.helpers import run_cli as run


def profile_json(monkeypatch, capsys, *args):
    code, out, err = run(monkeypatch, capsys, "profile", "--format", "json", *args)
    assert code == 0, err
    return json.loads(out)


def test_llmviewer_regenerates_table_8(monkeypatch, capsys):
    report = profile_json(monkeypatch, capsys)
    assert [(r["method"], r["quant"]) for r in report["rows"]][:3] == [("none", "fp16"), ("none", "int8"), ("none", "int4")]
    assert len(report["rows"]) == 12
    assert {r["table"] for r in report["paper"]} == {8}
    for row in report["paper"]:
        for cell in row["cells"].values():
            assert cell["verdict"] != "match" or abs(cell["rel_diff"]) <= 0.01
    none = report["rows"][0]
    assert (none["tflops"], none["memory_access_gb"], none["kv_cache_mb"]) == (8.4533, 22.207, 333.45)


def test_llmviewer_table_9_markdown(monkeypatch, capsys):
    code, out, err = run(monkeypatch, capsys, "profile", "--model", "llava-1.5-13b", "--methods", "none",
                         "--quant", "fp16", "--text-tokens", "512")
    assert code == 0, err
    assert "## Paper comparison" in out and "| 9 | ficoco-v | fp16 | 596 |" in out
    assert "1088" in out


def test_physical_with_device(monkeypatch, capsys):
    report = profile_json(monkeypatch, capsys, "--mode", "physical", "--device", "jetson-orin-nano-8gb",
                          "--methods", "none,ficoco-vl", "--batch", "2", "--context", "200")
    rows = {(r["method"], r["quant"]): r for r in report["device"]["rows"]}
    assert not rows[("none", "fp16")]["fits"] and rows[("none", "int4")]["fits"]
    assert report["rows"][0]["kv_mb"] == round(2 * 2 * 32 * (576 + 200) * 4096 * 2 / 1e6, 2)
    assert report["context"] == 200 and report["batch"] == 2


def test_keep_instead_of_budget(monkeypatch, capsys):
    report = profile_json(monkeypatch, capsys, "--methods", "ficoco-v", "--quant", "fp16", "--keep", "64")
    assert report["rows"][0]["llm_tokens_first"] == 124
    assert report["rows"][0]["kv_cache_mb"] == 65.01


def test_save_and_plot(monkeypatch, capsys, tmp_path):
    prefix, png = tmp_path / "out" / "report", tmp_path / "plot.png"
    code, out, err = run(monkeypatch, capsys, "profile", "--mode", "physical", "--methods", "none,ficoco-v",
                         "--quant", "fp16,int4", "--device", "rtx-4090", "--save", str(prefix), "--plot", str(png))
    assert code == 0, err
    assert json.loads((tmp_path / "out" / "report.json").read_text())["mode"] == "physical"
    assert (tmp_path / "out" / "report.md").read_text().startswith("# ficoco-edge profile")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    "args, needle",
    [
        (("--methods", "none,bogus"), "ficoco-v, ficoco-l"),
        (("--quant", "fp16,int3"), "fp16, int8, int4"),
        (("--mode", "fast"), "llmviewer, physical, measured"),
        (("--format", "xml"), "md, json"),
        (("--budget", "abc"), "not a number"),
        (("--methods", "ficoco-v", "--budget", "0.1"), "valid range"),
        (("--device", "jetson-thor"), "jetson-orin-nano-8gb"),
        (("--batch", "0"), "--batch"),
        (("--batch", "two"), "--batch"),
        (("--context", "10"), "--context"),
        (("--kv-bits", "3"), "--kv-bits"),
        (("--model", "nope"), "llava-1.5-7b"),
        (("--plot", "out.jpg"), ".png"),
    ],
)
def test_bad_input_is_one_line_exit_2(monkeypatch, capsys, args, needle):
    code, out, err = run(monkeypatch, capsys, "profile", *args)
    assert code == 2, err
    assert needle in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown without a GPU")
def test_measured_mode_without_a_gpu(monkeypatch, capsys):
    code, out, err = run(monkeypatch, capsys, "profile", "--mode", "measured", "--quant", "fp16")
    assert code == 2 and "needs a CUDA GPU" in err and len(err.strip().splitlines()) == 1


def test_cpu_measured_mode_needs_the_embedded_model(monkeypatch, capsys):
    code, _, err = run(monkeypatch, capsys, "profile", "--mode", "measured", "--gpu", "cpu", "--model", "llava-1.5-7b")
    assert code == 2 and "embedded" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("flag", [("--batch", "4"), ("--text-tokens", "100"), ("--kv-bits", "4"), ("--context", "90")])
def test_cpu_measured_mode_refuses_settings_it_would_not_use(monkeypatch, capsys, flag):
    """It answers the benchmark's prompt; a header claiming another batch or prompt would misreport it."""
    code, _, err = run(monkeypatch, capsys, "profile", "--mode", "measured", "--gpu", "cpu", "--model", "embedded",
                       "--quant", "fp32", *flag)
    assert code == 2 and "drop --batch" in err and len(err.strip().splitlines()) == 1
