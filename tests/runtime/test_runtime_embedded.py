"""The runtime on real exports of the embedded model: answers equal the PyTorch patched model's,
KV bytes equal the cost model, torch is never imported, and bad exports are refused."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ficoco_edge.arch import LLMArch
from ficoco_edge.cost import kv_bytes
from ficoco_edge.errors import UsageError
from ficoco_edge.eval.datasets import load_samples
from ficoco_edge.models.llava import reduced
from ficoco_edge.runtime import Runtime, Sampler
from tests.helpers import copy_export
from tests.runtime.conftest import METHODS, needs_embedded, schedule
from tests.runtime.test_light_imports import BLOCK_EXPORT_TOOLS

pytestmark = needs_embedded
QUESTIONS = 20
STEPS = 8


@pytest.mark.parametrize("method", METHODS)
def test_onnxruntime_answers_equal_the_pytorch_model(embedded_vlm, embedded_exports, method):
    samples = load_samples("easy-vqa", "test", limit=QUESTIONS, seed=11)
    images = [Image.open(s.image) for s in samples]
    with reduced(embedded_vlm.model, method, schedule(method)):
        want = embedded_vlm.answer(images, [s.question for s in samples], STEPS)
    runtime = Runtime.load(embedded_exports[method], device="cpu")
    got = [runtime.answer(im, s.question, STEPS).text for im, s in zip(images, samples)]
    assert got == want


@pytest.mark.parametrize("method", ["none", "ficoco-l"])
def test_kv_bytes_equal_the_cost_formula(embedded_exports, method):
    runtime = Runtime.load(embedded_exports[method], device="cpu")
    answer = runtime.answer("examples/red-triangle.png", "What color is the shape?", max_new_tokens=5)
    m = runtime.manifest
    text = len(runtime.prompt_ids("What color is the shape?")) - m["visual_tokens"]
    assert answer.prefill_lengths == [text + v for v in m["llm_visual_tokens_per_layer"]]
    llm = LLMArch(m["llm"]["layers"], m["llm"]["hidden"], 1, m["llm"]["hidden"] // m["llm"]["head_dim"],
                  m["llm"]["kv_heads"], m["llm"]["vocab"])
    want = kv_bytes(llm, [s + 5 for s in answer.prefill_lengths], bytes_per_element=4)
    assert answer.kv_bytes == want == runtime.kv_bytes(text, 5)
    if method == "ficoco-l":  # fewer slots after layer K: no common maximum
        assert len(set(answer.prefill_lengths)) == 2


def test_torch_backend_streaming_and_sampling(embedded_exports):
    directory = embedded_exports["ficoco-vl"]
    ort, torch_rt = Runtime.load(directory, device="cpu"), Runtime.load(directory, backend="torch")
    question = "What shape is in the image?"
    pieces = []
    streamed = ort.answer("examples/blue-circle.png", question, STEPS, on_text=pieces.append)
    assert "".join(pieces).strip() == streamed.text
    assert torch_rt.answer("examples/blue-circle.png", question, STEPS).token_ids == streamed.token_ids
    sampled = [ort.answer("examples/blue-circle.png", question, STEPS, Sampler(1.5, 0.95, seed=7)).token_ids
               for _ in range(2)]
    assert sampled[0] == sampled[1]


def test_memory_limit_refuses_up_front(embedded_exports):
    runtime = Runtime.load(embedded_exports["ficoco-v"], device="cpu")
    needed = (runtime.weight_bytes() + runtime.kv_bytes(30, 32)) / 1e6
    with pytest.raises(UsageError, match=r"needs \d+\.\d MB .* > --memory-limit"):
        runtime.answer("examples/red-triangle.png", "What color is the shape?", memory_limit_mb=needed * 0.9)
    assert runtime.answer("examples/red-triangle.png", "What color?", 4, memory_limit_mb=needed * 1.1).text


def test_positions_past_the_rope_table_are_refused(embedded_vlm, embedded_exports):
    runtime = Runtime.load(embedded_exports["ficoco-v"], device="cpu")
    limit = runtime.manifest["llm"]["max_positions"]
    assert limit == embedded_vlm.model.config.text_config.max_position_embeddings
    prompt = len(runtime.prompt_ids("What color is the shape?"))
    with pytest.raises(UsageError, match=f"exceeds the model's {limit} positions"):
        runtime.answer("examples/red-triangle.png", "What color is the shape?", limit - prompt + 1)
    runtime.check_positions(prompt, limit - prompt)  # the last position itself is allowed


def test_runs_an_export_without_the_export_tools(embedded_exports, tmp_path):
    directory = embedded_exports["ficoco-v"]
    code = BLOCK_EXPORT_TOOLS + (
        "from ficoco_edge.runtime import Runtime\n"
        f"print(Runtime.load({str(directory)!r}, device='cpu').answer('examples/red-triangle.png', "
        "'What color is the shape?', 8).text)\n"
        "sys.argv = ['ficoco-edge', 'run', 'examples/red-triangle.png', 'What color is the shape?', "
        f"'--export', {str(directory)!r}, '--max-new-tokens', '8', '--no-stream']\n"
        "from ficoco_edge.cli import main\nmain()\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    want = Runtime.load(directory, device="cpu").answer("examples/red-triangle.png", "What color is the shape?", 8).text
    assert done.stdout.splitlines() == [want, want]
    torch_backend = BLOCK_EXPORT_TOOLS + (
        "sys.argv = ['ficoco-edge', 'run', 'examples/red-triangle.png', 'What color is the shape?', "
        f"'--export', {str(directory)!r}, '--backend', 'torch']\nfrom ficoco_edge.cli import main\nmain()\n")
    done = subprocess.run([sys.executable, "-c", torch_backend], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "needs torch (the PyTorch backend)" in done.stderr
    assert "--backend ort" in done.stderr and "--export DIR" not in done.stderr  # it was given
    dataset = tmp_path / "vqa.jsonl"
    dataset.write_text(json.dumps({"image": str(Path("examples/red-triangle.png").absolute()),
                                   "question": "What color is the shape?", "answer": "red"}) + "\n")
    evaluate = BLOCK_EXPORT_TOOLS + (
        f"sys.argv = ['ficoco-edge', 'eval', '--exports', {str(directory)!r}, '--dataset', {str(dataset)!r}, "
        "'--no-progress', '--format', 'json']\nfrom ficoco_edge.cli import main\nmain()\n")
    done = subprocess.run([sys.executable, "-c", evaluate], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)[0]["n"] == 1


def test_corrupted_or_incompatible_export_is_refused(embedded_exports, tmp_path):
    copy = tmp_path / "copy"
    copy_export(embedded_exports["ficoco-v"], copy, edited=["embed_tokens.npy", "manifest.json"])
    with open(copy / "embed_tokens.npy", "r+b") as f:
        f.seek(-4, 2)
        f.write(b"\x00\x01\x02\x03")
    with pytest.raises(UsageError, match="does not match its sha256"):
        Runtime.load(copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    (copy / "manifest.json").write_text(json.dumps({**manifest, "schema_version": 99}))
    with pytest.raises(UsageError, match="schema version 99"):
        Runtime.load(copy)
    with pytest.raises(UsageError, match="not found"):
        Runtime.load(tmp_path / "nothing")
    with pytest.raises(UsageError, match="is a file; pass the directory"):
        Runtime.load(copy / "manifest.json")


def test_over_long_and_empty_questions(embedded_exports):
    runtime = Runtime.load(embedded_exports["none"], device="cpu")
    for question, message in [("  ", "empty"), ("why " * 600, "at most"), ("a b " * 800, "at most")]:
        with pytest.raises(UsageError, match=message):
            runtime.answer("examples/red-triangle.png", question)
    assert np.all(runtime.prompt_ids("What?") >= 0)
