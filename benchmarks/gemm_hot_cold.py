"""The embedded LLM's fp32 projections (per layer x @ qkv, @ o, @ gate/up, @ down, residual adds,
576 / 960 / 3072 / 1536 wide) chained over 30 layers through onnxruntime's CPU provider, with the
weights hot (every layer reuses layer 0's 14 MB, which stay in cache) and cold (30 layers of
different weights, 425 MB, each streamed from memory as in a prefill).

    python benchmarks/gemm_hot_cold.py [--rows 86,607] [--layers 30] [--rounds 6] [--transposed]

Prints ms per chain and GFLOP/s for each row count: why the fp32 prefill gains less than its
FLOPs ratio from fewer tokens (docs/benchmarks.md). Hot and cold runs alternate in rounds.
--transposed computes y^T = W^T x^T with the activations kept feature-major, so the weights are
the GEMM's streamed left operand and the few token columns the packed, cached one.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

H, QKV, INTER = 576, 960, 1536
SHAPES = {"qkv": (H, QKV), "o": (H, H), "gate_up": (H, 2 * INTER), "down": (INTER, H)}


def chain(layers: int, distinct: bool, rng: np.random.Generator, transposed: bool = False) -> ort.InferenceSession:
    """x (m, H) -> y (m, H) through `layers` layers (transposed: x^T (H, m) -> y^T); each uses the
    first H of qkv's outputs as the attention output and the first INTER of gate/up's as the MLP's
    activation (Slice, as a Split)."""
    starts = {"zero": [0], "hidden": [H], "inter": [INTER], "axis": [0 if transposed else 1]}
    init = [numpy_helper.from_array(np.array(v, np.int64), k) for k, v in starts.items()]

    def matmul(x: str, weight: str, out: str):
        return helper.make_node("MatMul", [weight, x] if transposed else [x, weight], [out])

    nodes, h = [], "x"
    for layer in range(layers):
        w = {k: f"{k}{layer if distinct else 0}" for k in SHAPES}
        if distinct or layer == 0:
            for k, shape in SHAPES.items():
                weight = rng.standard_normal(shape, np.float32) * 0.02
                init.append(numpy_helper.from_array(np.ascontiguousarray(weight.T) if transposed else weight, w[k]))
        t = f"_{layer}"
        nodes += [matmul(h, w["qkv"], "qkv" + t),
                  helper.make_node("Slice", ["qkv" + t, "zero", "hidden", "axis"], ["a" + t]),
                  matmul("a" + t, w["o"], "o" + t),
                  helper.make_node("Add", ["o" + t, h], ["r" + t]),
                  matmul("r" + t, w["gate_up"], "gu" + t),
                  helper.make_node("Slice", ["gu" + t, "zero", "inter", "axis"], ["g" + t]),
                  matmul("g" + t, w["down"], "d" + t),
                  helper.make_node("Add", ["d" + t, "r" + t], ["y" + t])]
        h = "y" + t
    nodes.append(helper.make_node("Identity", [h], ["y"]))
    io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [H, "m"] if transposed else ["m", H]) for n in ("x", "y")]
    model = helper.make_model(helper.make_graph(nodes, "chain", io[:1], io[1:], init),
                              opset_imports=[helper.make_opsetid("", 17)])
    options = ort.SessionOptions()
    options.add_session_config_entry("session.force_spinning_stop", "1")  # as the runtime's sessions
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def run_times(session: ort.InferenceSession, x: np.ndarray, runs: int) -> list[float]:
    session.run(None, {"x": x})
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(None, {"x": x})
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="86,607")
    parser.add_argument("--layers", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--transposed", action="store_true", help="weights as the left operand: W^T x^T")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    sessions = {kind: chain(args.layers, kind == "cold", rng, args.transposed) for kind in ("hot", "cold")}
    rows = [int(r) for r in args.rows.split(",")]
    inputs = {m: rng.standard_normal((H, m) if args.transposed else (m, H), np.float32) * 0.1 for m in rows}
    times = {(kind, m): [] for kind in sessions for m in rows}
    for _ in range(args.rounds):
        for (kind, m), samples in times.items():
            samples += run_times(sessions[kind], inputs[m], max(2, 1000 // m))
    print(f"{'rows':>5} {'hot ms':>8} {'cold ms':>8} {'cold/hot':>8} {'hot GFLOP/s':>11} {'cold GFLOP/s':>12}")
    for m in rows:
        hot, cold = (statistics.median(times[kind, m]) for kind in ("hot", "cold"))
        flops = 2 * m * args.layers * sum(k * n for k, n in SHAPES.values())
        print(f"{m:5d} {hot * 1e3:8.2f} {cold * 1e3:8.2f} {cold / hot:8.2f} {flops / hot / 1e9:11.1f} "
              f"{flops / cold / 1e9:12.1f}")


if __name__ == "__main__":
    main()
