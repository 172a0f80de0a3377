"""One weights file for several graphs, against the self-contained graphs, run by onnxruntime."""

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from ficoco_edge.export.shared_weights import ALIGN, MIN_BYTES, WEIGHTS_FILE, share_weights


def _graph(weights: dict[str, np.ndarray]) -> onnx.ModelProto:
    """x (2, 16) -> x @ w for every weight in turn (each w (16, 16)), plus a small bias."""
    bias = numpy_helper.from_array(np.arange(16, dtype=np.float32), "bias")  # 64 bytes: stays inline
    nodes, previous = [], "x"
    for name in weights:
        nodes.append(helper.make_node("MatMul", [previous, name], [f"{name}_out"]))
        previous = f"{name}_out"
    nodes.append(helper.make_node("Add", [previous, "bias"], ["y"]))
    inits = [numpy_helper.from_array(w, name) for name, w in weights.items()] + [bias]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 16])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _run(path, x):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def _locations(path) -> dict[str, dict[str, str]]:
    model = onnx.load(str(path), load_external_data=False)
    return {t.name: {e.key: e.value for e in t.external_data} for t in model.graph.initializer}


def test_graphs_share_one_file_and_compute_the_same(tmp_path):
    rng = np.random.default_rng(0)
    w = {name: rng.standard_normal((16, 16)).astype(np.float32) for name in ("a", "b", "c")}
    # "prefill" and "decode" hold a and b; decode names b differently; c is decode's own
    prefill = _graph({"a": w["a"], "b": w["b"]})
    decode = _graph({"a": w["a"], "b_renamed": w["b"], "c": w["c"]})
    onnx.save(prefill, str(tmp_path / "prefill.onnx"))
    onnx.save(decode, str(tmp_path / "decode.onnx"))
    x = rng.standard_normal((2, 16)).astype(np.float32)
    want = {name: _run(tmp_path / f"{name}.onnx", x) for name in ("prefill", "decode")}

    loaded = share_weights(tmp_path, ["prefill.onnx", "decode.onnx"])

    assert loaded == {"prefill.onnx": 2 * w["a"].nbytes, "decode.onnx": 3 * w["a"].nbytes}
    for name in ("prefill", "decode"):
        np.testing.assert_array_equal(_run(tmp_path / f"{name}.onnx", x), want[name])
        assert (tmp_path / f"{name}.onnx").stat().st_size < MIN_BYTES * 2  # structure only
    first, second = _locations(tmp_path / "prefill.onnx"), _locations(tmp_path / "decode.onnx")
    assert first["a"] == second["a"] and first["b"] == second["b_renamed"]  # each distinct tensor once
    assert first["bias"] == {} and second["bias"] == {}
    offsets = sorted({int(loc["offset"]) for loc in [*first.values(), *second.values()] if loc})
    assert len(offsets) == 3 and all(o % ALIGN == 0 for o in offsets)
    assert (tmp_path / WEIGHTS_FILE).stat().st_size == 2 * ALIGN + w["c"].nbytes
    assert not list(tmp_path.glob(".*partial"))
