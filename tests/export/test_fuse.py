"""Sibling MatMul fusion against the unfused graph, run by onnxruntime."""

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from ficoco_edge.export.fuse import fuse_sibling_matmuls


def _graph(widths: dict[str, tuple[int, int]], shared: str | None = None) -> onnx.ModelProto:
    """x (1, s, 8) feeding one MatMul per weight name; `shared` is used by a second MatMul on y too."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name) for name, shape in widths.items()]
    nodes = [helper.make_node("MatMul", ["x", name], [f"out_{name}"], f"mm_{name}") for name in widths]
    outputs = [helper.make_tensor_value_info(f"out_{name}", TensorProto.FLOAT, [1, "s", shape[1]])
               for name, shape in widths.items()]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, "s", 8])]
    if shared:
        nodes.append(helper.make_node("MatMul", ["y", shared], ["out_y"], "mm_y"))
        inputs.append(helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, "s", 8]))
        outputs.append(helper.make_tensor_value_info("out_y", TensorProto.FLOAT, [1, "s", widths[shared][1]]))
    graph = helper.make_graph(nodes, "g", inputs, outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _run(model: onnx.ModelProto, feeds: dict) -> list[np.ndarray]:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def test_siblings_become_one_matmul_with_the_same_outputs():
    model = _graph({"wq": (8, 6), "wk": (8, 2), "wv": (8, 2), "other_k": (5, 3)})
    model.graph.node[3].input[0] = "z"  # other_k reads another input: not a sibling
    model.graph.input.append(helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, "s", 5]))
    rng = np.random.default_rng(1)
    feeds = {"x": rng.standard_normal((1, 7, 8)).astype(np.float32), "z": rng.standard_normal((1, 7, 5)).astype(np.float32)}
    want = _run(model, feeds)
    fused = onnx.ModelProto()
    fused.CopyFrom(model)
    assert fuse_sibling_matmuls(fused) == 2
    onnx.checker.check_model(fused)
    assert [n.op_type for n in fused.graph.node].count("MatMul") == 2
    assert {i.name for i in fused.graph.initializer} >= {"other_k"} and "wq" not in {i.name for i in fused.graph.initializer}
    for got, ref in zip(_run(fused, feeds), want):
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


def test_a_weight_used_elsewhere_keeps_its_matmul():
    model = _graph({"wq": (8, 4), "wk": (8, 4)}, shared="wq")
    assert fuse_sibling_matmuls(model) == 0  # wk alone is no group
    model = _graph({"wq": (8, 4), "wk": (8, 4), "wv": (8, 4)}, shared="wq")
    rng = np.random.default_rng(2)
    feeds = {"x": rng.standard_normal((1, 3, 8)).astype(np.float32), "y": rng.standard_normal((1, 3, 8)).astype(np.float32)}
    want = _run(model, feeds)
    assert fuse_sibling_matmuls(model) == 1  # wk + wv; wq stays for both its users
    for got, ref in zip(_run(model, feeds), want):
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
