"""INT8 / INT4 exports of tiny LLaVAs: the expected quantized ops, onnx.checker, per-layer cache
lengths unchanged, and next-token agreement with the fp32 graphs recorded in the manifest."""

import onnx
import pytest

from ficoco_edge.errors import UsageError
from ficoco_edge.export import exporter
from tests.export.conftest import METHODS, schedule_for

EXPECTED_OPS = {("int8", "ort"): {"MatMulInteger", "DynamicQuantizeLinear"},
                ("int4", "ort"): {"MatMulNBits"}, ("int4", "trt"): {"DequantizeLinear"}}


@pytest.mark.parametrize("quant, target", list(EXPECTED_OPS))
@pytest.mark.parametrize("method", METHODS)
def test_quantized_export(tiny_vlm, tmp_path, method, quant, target):
    fp32 = exporter.export(tiny_vlm, method, schedule_for(method), tmp_path / "fp32", budget=1.5)
    manifest = exporter.export(tiny_vlm, method, schedule_for(method), tmp_path / "q", budget=1.5,
                               quant=quant, target=target)
    assert (manifest["quant"], manifest["target"]) == (quant, target)
    assert manifest["llm_visual_tokens_per_layer"] == fp32["llm_visual_tokens_per_layer"]
    for name in ("prefill", "decode"):
        model = onnx.load(str(tmp_path / "q" / manifest["graphs"][name]["file"]))
        onnx.checker.check_model(model, full_check=True)
        ops = {n.op_type for n in model.graph.node}
        assert EXPECTED_OPS[(quant, target)] <= ops
        if target == "trt":
            assert all(n.domain in ("", "ai.onnx") for n in model.graph.node)
    assert manifest["validation"]["next_token_agreement"] >= 0.5
    size = lambda d: (tmp_path / d / "prefill.onnx").stat().st_size  # noqa: E731
    assert size("q") < size("fp32")


def test_bad_quant_and_target(tiny_vlm, tmp_path):
    for kwargs, message in [({"quant": "int2"}, "unknown quant"), ({"target": "tpu"}, "unknown target"),
                            ({"quant": "int8", "target": "trt"}, "onnxruntime-only")]:
        with pytest.raises(UsageError, match=message):
            exporter.export(tiny_vlm, "none", schedule_for("none"), tmp_path / "x", **kwargs)
    assert not (tmp_path / "x").exists()
