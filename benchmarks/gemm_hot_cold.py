"""One fp32 MatMul of the embedded LLM's gate/up size (x (1, M, 576) @ w (576, 3072)) through
onnxruntime's CPU provider, with its weight hot in cache (the same w every run) and cold (a graph
of 40 such MatMuls on 40 different weights, 283 MB, so each comes from memory as in a prefill).

    python benchmarks/gemm_hot_cold.py [--rows 86,607] [--copies 40]

Prints ms per MatMul and GFLOP/s for each row count: why the fp32 prefill gains less than its
FLOPs ratio from fewer tokens (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

K, N = 576, 3072


def matmuls(copies: int, rng: np.random.Generator) -> ort.InferenceSession:
    """x (1, m, K) @ w_i (K, N) for i < copies, each its own output."""
    weights = [numpy_helper.from_array(rng.random((K, N), np.float32), f"w{i}") for i in range(copies)]
    nodes = [helper.make_node("MatMul", ["x", f"w{i}"], [f"y{i}"]) for i in range(copies)]
    outputs = [helper.make_tensor_value_info(f"y{i}", TensorProto.FLOAT, [1, "m", N]) for i in range(copies)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, "m", K])],
                              outputs, weights)
    options = ort.SessionOptions()
    options.add_session_config_entry("session.force_spinning_stop", "1")  # as the runtime's sessions
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def seconds_per_run(session: ort.InferenceSession, x: np.ndarray, runs: int) -> float:
    session.run(None, {"x": x})
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(None, {"x": x})
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="86,607")
    parser.add_argument("--copies", type=int, default=40)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    hot, cold = matmuls(1, rng), matmuls(args.copies, rng)
    print(f"{'rows':>5} {'hot ms':>8} {'cold ms':>8} {'cold/hot':>8} {'hot GFLOP/s':>11} {'cold GFLOP/s':>12}")
    for rows in (int(r) for r in args.rows.split(",")):
        x = rng.random((1, rows, K), np.float32)
        t_hot = seconds_per_run(hot, x, 40)
        t_cold = seconds_per_run(cold, x, 8) / args.copies
        flops = 2 * rows * K * N
        print(f"{rows:5d} {t_hot * 1e3:8.3f} {t_cold * 1e3:8.3f} {t_cold / t_hot:8.2f} {flops / t_hot / 1e9:11.1f} "
              f"{flops / t_cold / 1e9:12.1f}")


if __name__ == "__main__":
    main()
