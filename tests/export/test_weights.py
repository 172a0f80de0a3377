"""Weight quantization and fp16 conversion on hand-built graphs: MatMulNBits' packing (symmetric and
min/max blocks with offsets) and DequantizeLinear's INT4/INT8 forms reproduce numpy's dequantized
weights, Q4_1 weights come back exactly, int4's bytes per parameter, and fp16 graphs keep RMSNorm's
statistics in fp32."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from ficoco_edge.export import weights
from ficoco_edge.export.fp16 import fp32_islands, to_fp16

K, N = 64, 48


def matmul_graph(w: np.ndarray, opset: int) -> onnx.ModelProto:
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], "mm")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 5, w.shape[0]])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 5, w.shape[1]])],
                              [numpy_helper.from_array(w, "w")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


@pytest.fixture()
def w_x():
    rng = np.random.default_rng(0)
    return (rng.standard_normal((K, N)) * 0.05).astype(np.float32), rng.standard_normal((2, 5, K)).astype(np.float32)


def test_symmetric_quantization_round_trips(w_x):
    w, _ = w_x
    for bits, block, levels in ((4, 32, (-8, 7)), (8, None, (-127, 127))):
        q, scale = weights.quantize_symmetric(w, bits, block)
        assert scale.dtype == np.float16 and (q.min(), q.max()) == levels
        step = np.abs(w).max() / (levels[1] if bits == 8 else 7)
        assert np.abs(weights.dequantize(q, scale, block) - w).max() <= step


@pytest.mark.parametrize("bits", [4, 8])
def test_matmul_nbits_packing_is_exact(w_x, bits):
    w, x = w_x
    model = matmul_graph(w, 17)
    assert weights.to_matmul_nbits(model, bits=bits, accuracy_level=0) == 1  # fp32 arithmetic: exact check
    onnx.checker.check_model(model)
    q, scale = weights.quantize_symmetric(w, bits, 32)
    assert np.abs(run(model, x) - x @ weights.dequantize(q, scale, 32)).max() < 1e-5
    fp16_scales = [i for i in model.graph.initializer if i.name.endswith("_scales_fp16")]
    assert [i.data_type for i in fp16_scales] == [TensorProto.FLOAT16] and "w" not in {i.name for i in model.graph.initializer}


@pytest.mark.parametrize("bits, block", [(4, 32), (8, None)])
def test_dequantize_linear_weights(w_x, bits, block):
    w, x = w_x
    model = to_fp16(matmul_graph(w, 21))
    assert weights.to_dequantize_linear(model, bits, {"w": w}) == 1
    onnx.checker.check_model(model, full_check=True)
    types = {i.name: i.data_type for i in model.graph.initializer}
    assert types == {"w_q": TensorProto.INT4 if bits == 4 else TensorProto.INT8, "w_scale": TensorProto.FLOAT16}
    q, scale = weights.quantize_symmetric(w, bits, block)
    got = run(model, x.astype(np.float16))
    assert got.dtype == np.float16
    want = x.astype(np.float16).astype(np.float32) @ weights.dequantize(q, scale, block)
    assert np.abs(got - want).max() < 0.02  # fp16 output and accumulation


def q4_1_weights(k: int, n: int, seed: int) -> np.ndarray:
    """Weights as a GGUF Q4_1 file stores them: per block of 32 along K, an fp16 minimum and step
    and codes 0..15 (both ends used), dequantized in fp32."""
    rng = np.random.default_rng(seed)
    low = (rng.standard_normal((k // 32, 1, n)) * 0.05).astype(np.float16).astype(np.float32)
    step = (rng.uniform(0.001, 0.01, (k // 32, 1, n))).astype(np.float16).astype(np.float32)
    codes = rng.integers(0, 16, (k // 32, 32, n))
    codes[:, 0], codes[:, 1] = 0, 15
    return (low + codes * step).reshape(k, n).astype(np.float32)


def test_minmax_quantization_reproduces_q4_1_blocks_and_bounds_others(w_x):
    q41 = q4_1_weights(K, N, 3)
    codes, scale, offsets = weights.quantize_minmax(q41)
    assert codes.dtype == np.uint8 and scale.dtype == np.float16 and (codes.min(), codes.max()) == (0, 15)
    assert np.abs(weights.dequantize_minmax(codes, scale, offsets) - q41).max() <= 1e-6 * np.abs(q41).max()
    w, _ = w_x  # not on a grid: within half a step of each block's own range / 15
    codes, scale, offsets = weights.quantize_minmax(w)
    step = (w.reshape(K // 32, 32, N).max(1) - w.reshape(K // 32, 32, N).min(1)) / 15
    error = np.abs(weights.dequantize_minmax(codes, scale, offsets) - w).reshape(K // 32, 32, N).max(1)
    assert (error <= 0.5 * step * 1.01 + 1e-7).all()
    constant = np.full((32, 2), -0.3, np.float32)  # a constant block: the offset alone
    assert np.array_equal(weights.dequantize_minmax(*weights.quantize_minmax(constant)), constant)


@pytest.mark.parametrize("accuracy_level", [0, 4])
def test_matmul_nbits_block_offsets_equal_the_dequantized_product(accuracy_level):
    """The graph form (MatMulNBits on the codes + per-block sums @ offsets) against numpy's product
    with the dequantized weights; at accuracy_level 4 onnxruntime quantizes activations to int8."""
    w = q4_1_weights(K, N, 4)
    x = np.random.default_rng(5).standard_normal((2, 5, K)).astype(np.float32) + 0.5  # non-zero mean
    model = matmul_graph(w, 17)
    assert weights.to_matmul_nbits(model, accuracy_level=accuracy_level, block_offsets=True) == 1
    onnx.checker.check_model(model)
    want = x @ w  # the Q4_1 weights come back exactly
    error = np.abs(run(model, x) - want).max() / np.abs(want).max()
    assert error < (1e-5 if accuracy_level == 0 else 2e-2)
    symmetric = matmul_graph(w, 17)
    weights.to_matmul_nbits(symmetric, accuracy_level=accuracy_level)
    assert error < np.abs(run(symmetric, x) - want).max() / np.abs(want).max()


def test_int4_bytes_per_parameter():
    w = np.random.default_rng(1).standard_normal((576, 1536)).astype(np.float32) * 0.02
    block_sums = 576 * 18 * 4  # the shared 0/1 block-sum matrix, once per K in a whole graph
    for form, expected in (("symmetric", 0.5625), ("offsets", 0.6875), ("trt", 0.5625)):
        model = to_fp16(matmul_graph(w, 21)) if form == "trt" else matmul_graph(w, 17)
        if form == "trt":
            weights.to_dequantize_linear(model, 4, {"w": w})
        else:
            weights.to_matmul_nbits(model, block_offsets=form == "offsets")
        stored = sum(len(i.raw_data) for i in model.graph.initializer) - (block_sums if form == "offsets" else 0)
        assert stored / w.size == pytest.approx(expected)  # 4 bits + an fp16 scale (+ an fp32 offset) per 32


def rms_norm_graph() -> onnx.ModelProto:
    """x -> Cast(float) -> x * 1/sqrt(mean(x²) + eps) -> Cast -> * weight -> MatMul, as traced from Llama."""
    const = lambda name, v: helper.make_node("Constant", [], [name], f"c_{name}",  # noqa: E731
                                             value=numpy_helper.from_array(np.array(v, np.float32)))
    nodes = [helper.make_node("Cast", ["x"], ["xf"], "up", to=TensorProto.FLOAT), const("two", 2.0), const("eps", 1e-5),
             const("one", 1.0), helper.make_node("Pow", ["xf", "two"], ["sq"], "pow"),
             helper.make_node("ReduceMean", ["sq"], ["var"], "mean", axes=[-1]),
             helper.make_node("Add", ["var", "eps"], ["ve"], "add"), helper.make_node("Sqrt", ["ve"], ["rms"], "sqrt"),
             helper.make_node("Div", ["one", "rms"], ["inv"], "div"), helper.make_node("Mul", ["xf", "inv"], ["normed"], "mul"),
             helper.make_node("Cast", ["normed"], ["down"], "down", to=TensorProto.FLOAT),
             helper.make_node("Mul", ["g", "down"], ["scaled"], "gain"), helper.make_node("MatMul", ["scaled", "w"], ["y"], "mm")]
    rng = np.random.default_rng(2)
    graph = helper.make_graph(nodes, "rms", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, K])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, N])],
                              [numpy_helper.from_array(np.ones(K, np.float32), "g"),
                               numpy_helper.from_array((rng.standard_normal((K, N)) * 0.1).astype(np.float32), "w")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_fp16_keeps_rms_norm_statistics_in_fp32():
    model = rms_norm_graph()
    assert fp32_islands(model) == {"up", "pow", "mean", "add", "sqrt", "div", "mul", "down", "c_two", "c_eps", "c_one"}
    x = np.random.default_rng(3).standard_normal((1, 3, K)).astype(np.float32) * 400  # x² overflows fp16
    want = run(model, x)
    got = run(to_fp16(model), x.astype(np.float16)).astype(np.float32)
    assert np.isfinite(got).all() and np.abs(got - want).max() < 0.01 * np.abs(want).max()


def test_select_limits_which_matmuls_are_replaced(w_x):
    w, _ = w_x
    model = matmul_graph(w, 17)
    assert weights.to_matmul_nbits(model, select=lambda name: "down_proj" in name) == 0
    assert [n.op_type for n in model.graph.node] == ["MatMul"]
