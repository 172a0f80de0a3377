"""The exported prefill's attention (after the projections and RoPE) against onnxruntime's fused
`com.microsoft.GroupQueryAttention`, 30 chained layers of the embedded LLM's shape (9 query heads,
3 key/value heads, head size 64), fp32 on the CPU provider; both also output each layer's
key/value cache (1, 3, S, 64) as the prefill does.

    python benchmarks/attention_gqa.py [--tokens 86,607] [--rounds 5]

Prints the largest difference between the two and ms per chain (medians, the two graphs
alternating in rounds): whether the fused op would shorten the reduced prefill (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

HEADS, KV_HEADS, D, LAYERS = 9, 3, 64, 30
GROUP = HEADS // KV_HEADS


def exported_layer(q: str, t: str) -> list:
    """The ops graphs.attend exports: heads broadcast per group, additive causal bias, fp32 softmax."""
    node = helper.make_node
    return [node("Reshape", [q, "q_shape"], ["q5" + t]), node("Transpose", ["q5" + t], ["qh" + t], perm=[0, 2, 3, 1, 4]),
            node("Reshape", ["k", "kv_shape"], ["k4" + t]), node("Transpose", ["k4" + t], ["key" + t], perm=[0, 2, 1, 3]),
            node("Reshape", ["v", "kv_shape"], ["v4" + t]), node("Transpose", ["v4" + t], ["value" + t], perm=[0, 2, 1, 3]),
            node("Unsqueeze", ["key" + t, "axis2"], ["ku" + t]), node("Transpose", ["ku" + t], ["kt" + t], perm=[0, 1, 2, 4, 3]),
            node("MatMul", ["qh" + t, "kt" + t], ["s" + t]), node("Mul", ["s" + t, "scale"], ["ss" + t]),
            node("Add", ["ss" + t, "bias"], ["sb" + t]), node("Softmax", ["sb" + t], ["p" + t], axis=-1),
            node("Unsqueeze", ["value" + t, "axis2"], ["vu" + t]), node("MatMul", ["p" + t, "vu" + t], ["a" + t]),
            node("Transpose", ["a" + t], ["at" + t], perm=[0, 3, 1, 2, 4]), node("Reshape", ["at" + t, "out_shape"], ["y" + t])]


def fused_layer(q: str, t: str) -> list:
    return [helper.make_node("GroupQueryAttention", [q, "k", "v", "", "", "seqlens_k", "total"],
                             ["y" + t, "key" + t, "value" + t], domain="com.microsoft", num_heads=HEADS,
                             kv_num_heads=KV_HEADS)]


def session(fused: bool) -> ort.InferenceSession:
    """q (1, S, 576), k, v (1, S, 192) [+ bias (S, S) | seqlens_k (1,), total ()] -> y, key_l, value_l.
    Each layer's output is the next layer's query; k and v are the same for every layer."""
    shapes = {"q_shape": [1, -1, KV_HEADS, GROUP, D], "kv_shape": [1, -1, KV_HEADS, D], "out_shape": [1, -1, HEADS * D],
              "axis2": [2]}
    init = [numpy_helper.from_array(np.array(v, np.int64), k) for k, v in shapes.items()]
    init.append(numpy_helper.from_array(np.array(D ** -0.5, np.float32), "scale"))
    nodes, q, outputs = [], "q", []
    for layer in range(LAYERS):
        nodes += (fused_layer if fused else exported_layer)(q, f"_{layer}")
        q = f"y_{layer}"
        outputs += [f"key_{layer}", f"value_{layer}"]
    value = helper.make_tensor_value_info
    inputs = [value("q", TensorProto.FLOAT, [1, "S", HEADS * D]), value("k", TensorProto.FLOAT, [1, "S", KV_HEADS * D]),
              value("v", TensorProto.FLOAT, [1, "S", KV_HEADS * D])]
    inputs += ([value("seqlens_k", TensorProto.INT32, [1]), value("total", TensorProto.INT32, [])] if fused
               else [value("bias", TensorProto.FLOAT, ["S", "S"])])
    graph = helper.make_graph(nodes, "attention", inputs, [value(n, TensorProto.FLOAT, None) for n in (q, *outputs)],
                              [] if fused else init)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    options = ort.SessionOptions()
    options.add_session_config_entry("session.force_spinning_stop", "1")  # as the runtime's sessions
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def feeds(tokens: int, rng: np.random.Generator) -> dict[bool, dict]:
    q, k, v = (rng.standard_normal((1, tokens, n), np.float32) for n in (HEADS * D, KV_HEADS * D, KV_HEADS * D))
    bias = np.triu(np.full((tokens, tokens), np.finfo(np.float32).min, np.float32), 1)
    fused = {"seqlens_k": np.array([tokens - 1], np.int32), "total": np.array(tokens, np.int32)}
    return {False: {"q": q, "k": k, "v": v, "bias": bias}, True: {"q": q, "k": k, "v": v, **fused}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", default="86,607")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    sessions = {fused: session(fused) for fused in (False, True)}
    tokens = [int(t) for t in args.tokens.split(",")]
    inputs = {s: feeds(s, rng) for s in tokens}
    for s in tokens:
        ours, theirs = (sessions[f].run(None, inputs[s][f]) for f in (False, True))
        print(f"S={s}: largest |exported - fused| over output and caches: "
              f"{max(float(np.abs(a - b).max()) for a, b in zip(ours, theirs)):.2e}")
    times = {(f, s): [] for f in sessions for s in tokens}
    for _ in range(args.rounds):
        for (fused, s), samples in times.items():
            for _ in range(max(2, 500 // s)):
                start = time.perf_counter()
                sessions[fused].run(None, inputs[s][fused])
                samples.append(time.perf_counter() - start)
    print(f"{'tokens':>6} {'exported ms':>12} {'fused ms':>9} {'fused/exported':>15}")
    for s in tokens:
        ours, theirs = (statistics.median(times[f, s]) * 1e3 for f in (False, True))
        print(f"{s:6d} {ours:12.2f} {theirs:9.2f} {theirs / ours:15.2f}")


if __name__ == "__main__":
    main()
