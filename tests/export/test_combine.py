"""export/combine.py on two small graphs: the combined graph's branches give the separate graphs'
outputs, each stored weight is read once, and graphs the renaming cannot handle are refused."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from ficoco_edge.export.combine import DECODE_PREFIX, combine_llm
from ficoco_edge.export.shared_weights import share_weights

H = 16  # 16 x 16 fp32 weights: 1 KB, large enough to move into the weights file
RNG = np.random.default_rng(0)
SHARED, PREFILL_ONLY, DECODE_ONLY = (RNG.standard_normal((H, H)).astype(np.float32) for _ in range(3))
BIAS = np.arange(H, dtype=np.float32)  # small: stays inside each graph


def graph_file(path, name: str, tokens, second_weight: np.ndarray, cache_name: str, extra_node=None) -> None:
    """x (1, tokens, H) -> logits = x @ SHARED + BIAS, cache = x @ second_weight."""
    nodes = [helper.make_node("MatMul", ["x", "w_shared"], ["h"]), helper.make_node("Add", ["h", "bias"], ["logits"]),
             helper.make_node("MatMul", ["x", "w_second"], [cache_name])] + ([extra_node] if extra_node else [])
    inits = [numpy_helper.from_array(a, n) for a, n in ((SHARED, "w_shared"), (BIAS, "bias"), (second_weight, "w_second"))]
    io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, tokens, H]) for n in ("x", "logits", cache_name)]
    graph = helper.make_graph(nodes, name, io[:1], io[1:], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path / f"{name}.onnx"))


def run(path, feeds: dict) -> list[np.ndarray]:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)


def test_branches_answer_like_the_separate_graphs(tmp_path):
    graph_file(tmp_path, "prefill", "sequence", PREFILL_ONLY, "key_0")
    graph_file(tmp_path, "decode", 1, DECODE_ONLY, "new_key_0")
    share_weights(tmp_path, ["prefill.onnx", "decode.onnx"])
    spec = combine_llm(tmp_path, "prefill.onnx", "decode.onnx")
    assert spec["weights_bytes"] == 3 * SHARED.nbytes  # SHARED once, and each graph's own weight

    model = onnx.load(str(tmp_path / spec["file"]), load_external_data=False)
    names = sorted(t.name for t in model.graph.initializer)
    assert names == sorted(["w_shared", "bias", "w_second", DECODE_PREFIX + "w_second"])  # BIAS kept once too

    prompt, step = (RNG.standard_normal((1, n, H)).astype(np.float32) for n in (5, 1))
    idle = {"x": np.zeros((1, 1, H), np.float32), DECODE_PREFIX + "x": np.zeros((1, 1, H), np.float32)}
    combined = tmp_path / spec["file"]
    got = run(combined, {**idle, spec["switch"]: np.array(True), "x": prompt})
    want = run(tmp_path / "prefill.onnx", {"x": prompt})
    assert all(np.array_equal(a, b) for a, b in zip(got, want, strict=True))
    got = run(combined, {**idle, spec["switch"]: np.array(False), DECODE_PREFIX + "x": step})
    want = run(tmp_path / "decode.onnx", {"x": step})
    assert all(np.array_equal(a, b) for a, b in zip(got, want, strict=True))


def test_nested_graphs_are_refused(tmp_path):
    body = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "body", [],
                             [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    nested = helper.make_node("If", ["flag"], ["unused"], then_branch=body, else_branch=body)
    graph_file(tmp_path, "prefill", "sequence", PREFILL_ONLY, "key_0")
    graph_file(tmp_path, "decode", 1, DECODE_ONLY, "new_key_0", extra_node=nested)
    with pytest.raises(ValueError, match="nested graphs"):
        combine_llm(tmp_path, "prefill.onnx", "decode.onnx")


def test_the_combined_graph_is_used_where_onnxruntime_shares_packed_weights():
    from ficoco_edge.runtime.backends import shares_prepacked_weights

    assert [shares_prepacked_weights(v) for v in ("1.18.0", "1.20.1", "1.21.0", "1.32.0", "2.0.0.dev20270101")] == \
        [False, False, True, True, True]
