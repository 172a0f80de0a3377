"""The TensorRT readiness check (operator list kept as data with its source) on exported graphs."""

import onnx
import pytest
import torch
from onnx import TensorProto, helper

from ficoco_edge.export import exporter
from ficoco_edge.export.graphs import PrefillGraph
from ficoco_edge.export.tensorrt import support_table, tensorrt_problems
from ficoco_edge.models.llava import apply, image_tokens_for, remove
from tests.export.conftest import schedule_for


def test_support_table_has_its_source():
    table = support_table()
    assert table["source"].startswith("https://github.com/onnx/onnx-tensorrt/")
    assert {"MatMul", "TopK", "DequantizeLinear", "Trilu"} <= set(table["supported"])
    assert not {"MatMulInteger", "DynamicQuantizeLinear", "MatMulNBits"} & set(table["supported"])


@pytest.mark.parametrize("method, quant", [("none", "int4"), ("ficoco-v", "int4"), ("ficoco-l", "fp16"),
                                           ("ficoco-vl", "int4"), ("fastv", "fp32")])
def test_trt_exports_have_only_supported_ops(tiny_vlm, tmp_path, method, quant):
    manifest = exporter.export(tiny_vlm, method, schedule_for(method), tmp_path / "t", quant=quant, target="trt")
    assert manifest["tensorrt_problems"] == {"vision": [], "prefill": [], "decode": []}
    for graph in manifest["graphs"].values():
        model = onnx.load(str(tmp_path / "t" / graph["file"]))
        assert all(n.domain in ("", "ai.onnx") for n in model.graph.node)


def test_onnxruntime_only_ops_are_reported(tiny_vlm, tmp_path):
    exporter.export(tiny_vlm, "none", schedule_for("none"), tmp_path / "o", quant="int4", target="ort")
    problems = tensorrt_problems(tmp_path / "o" / "prefill.onnx")
    assert problems and all("com.microsoft." in p for p in problems)
    assert {"MatMulNBits", "RotaryEmbedding"} <= {p.split("com.microsoft.")[1].split()[0] for p in problems}


def test_a_computed_topk_k_is_reported(tmp_path):
    nodes = [helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Slice", ["s", "one", "two"], ["k"]),
             helper.make_node("TopK", ["x", "k"], ["v", "i"], axis=1)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 5])],
                              [helper.make_tensor_value_info("v", TensorProto.FLOAT, None)],
                              [helper.make_tensor("one", TensorProto.INT64, [1], [1]),
                               helper.make_tensor("two", TensorProto.INT64, [1], [2])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "g.onnx")
    assert tensorrt_problems(tmp_path / "g.onnx") == [": input 1 of TopK must be a constant for TensorRT"]


def test_a_scatter_with_a_reduction_is_reported(tmp_path):
    """TensorRT 8.6's parser refused FiCoCo-V's window minimum written as a scatter-min (seen on an H100)."""
    node = helper.make_node("ScatterElements", ["data", "idx", "upd"], ["out"], axis=1, reduction="min", name="s")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info(n, t, s) for n, t, s in [
        ("data", TensorProto.FLOAT, [1, 4]), ("idx", TensorProto.INT64, [1, 9]), ("upd", TensorProto.FLOAT, [1, 9])]],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 4])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 16)]), tmp_path / "g.onnx")
    assert tensorrt_problems(tmp_path / "g.onnx") == ["s: ScatterElements with reduction 'min'"]


@pytest.mark.parametrize("method", ["ficoco-l", "ficoco-vl", "fastv"])
def test_span_only_prefill_equals_the_token_track_prefill(tiny_vlm, method):
    """The TensorRT prefill keeps tokens by index arithmetic around the span; same outputs."""
    model = tiny_vlm.model.float().eval()
    apply(model, method, schedule_for(method))
    n = image_tokens_for(model)
    gen = torch.Generator().manual_seed(1)
    try:
        for before, after in ((0, 3), (5, 9), (40, 1)):
            embeds = torch.randn(1, before + n + after, model.config.text_config.hidden_size, generator=gen)
            with torch.no_grad():
                want = PrefillGraph(model, n)(embeds, torch.tensor(before))
                got = PrefillGraph(model, n, span_only=True)(embeds, torch.tensor(before))
            assert [t.shape for t in got] == [t.shape for t in want]
            assert all(torch.equal(a, b) for a, b in zip(got, want))
    finally:
        remove(model)
