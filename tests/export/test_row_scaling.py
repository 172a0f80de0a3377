"""The int8 export's row scaling of the MLP down projections' inputs (exports with smoothed weights):
the rewritten fp32 graph keeps the product, and after dynamic quantization (one activation scale per
call) rows of very different magnitudes each keep their own precision, which the same graph without
the rewrite loses."""

import numpy as np
import onnx
import pytest

from ficoco_edge.export.quantize import quantize_graph, scale_rows_to_unit_max
from tests.export.test_weights import K, N, matmul_graph, run


def rows_of_many_magnitudes(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """w (K, N); x (2, 5, K) whose rows' magnitudes span 1e-3 .. 1e3, one row all zeros."""
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal((K, N)) * 0.05).astype(np.float32)
    magnitudes = np.logspace(-3, 3, 10).reshape(2, 5, 1)
    x = (rng.standard_normal((2, 5, K)) * magnitudes).astype(np.float32)
    x[1, 2] = 0
    return w, x


def named(model: onnx.ModelProto, node_name: str) -> onnx.ModelProto:
    model.graph.node[0].name = node_name
    return model


@pytest.mark.parametrize("opset", [17, 18])
def test_row_scaling_keeps_the_fp32_product(opset):
    w, x = rows_of_many_magnitudes()
    model = matmul_graph(w, opset)
    assert scale_rows_to_unit_max(model, select=lambda name: name == "mm") == 1
    onnx.checker.check_model(model, full_check=True)
    got, want = run(model, x), x @ w
    assert np.isfinite(got).all() and not got[1, 2].any()
    row_peak = np.abs(want).max(-1, keepdims=True)
    assert (np.abs(got - want) <= 1e-5 * row_peak).all()  # summation order only, relative to each row


def test_select_skips_other_matmuls():
    w, _ = rows_of_many_magnitudes()
    model = matmul_graph(w, 17)
    assert scale_rows_to_unit_max(model, select=lambda name: "down_proj" in name) == 0
    assert [n.op_type for n in model.graph.node] == ["MatMul"]


def row_errors(model: onnx.ModelProto, tmp_path, x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Per row of the int8 graph's output: max |error| / max |x @ w|, zero rows left out."""
    onnx.save(model, tmp_path / "src.onnx")
    quantize_graph(tmp_path / "src.onnx", tmp_path / "int8.onnx", "int8", smoothed=True)
    quantized = onnx.load(str(tmp_path / "int8.onnx"))
    assert "DynamicQuantizeLinear" in {n.op_type for n in quantized.graph.node}
    got, want = run(quantized, x), x @ w
    peak = np.abs(want).max(-1)
    return (np.abs(got - want).max(-1) / np.where(peak > 0, peak, 1))[peak > 0]


def test_int8_down_projection_rows_keep_their_own_precision(tmp_path):
    w, x = rows_of_many_magnitudes()
    scaled = row_errors(named(matmul_graph(w, 17), "/mlp/down_proj/MatMul"), tmp_path, x, w)
    plain = row_errors(named(matmul_graph(w, 17), "/mlp/gate_proj/MatMul"), tmp_path, x, w)
    assert scaled.max() < 0.03  # int8 weights and activations, each row on its own range
    assert plain.max() > 0.5  # one scale for all rows: the 1e-3 rows round to nothing
