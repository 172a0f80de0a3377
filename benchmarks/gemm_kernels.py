"""The CPU kernels behind each --quant, timed on the LLM's widest projection shape (576 -> 3072, the
embedded model's gate/up) chained over 30 layers of distinct weights, as in a prefill or a decode
step, through onnxruntime's CPU provider:

    fp32  MatMul                                 the fp32 export
    dq8   DynamicQuantizeMatMul (int8 weights per column, activations per call)
                                                 the int8 export's q/k/v, o, gate/up
    nb8   MatMulNBits 8-bit block 32, accuracy_level 4
                                                 the int8 export's MLP down projections
    nb4   MatMulNBits 4-bit block 32, accuracy_level 4
                                                 the int4 export (its block-offset nodes not included)

    python benchmarks/gemm_kernels.py [--rows 1,86,607] [--rounds 7]

Prints ms per chain (medians, the kernels alternating in rounds) and each kernel's speed relative to
fp32: why the int4 export's prefill is no faster than fp32's although its decode is the fastest
(docs/benchmarks.md, "Which --quant").
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

K, N, LAYERS, BLOCK = 576, 3072, 30, 32
KERNELS = ("fp32", "dq8", "nb8", "nb4")


def layer(kind: str, x: str, index: int, rng: np.random.Generator) -> tuple[list, list]:
    """Nodes and initializers of one (rows, K) -> (rows, N) product of kernel `kind`, then a Slice
    back to K columns so that the next layer can read it."""
    y, inits = f"y{index}", []
    if kind == "fp32":
        inits.append(numpy_helper.from_array(rng.standard_normal((K, N), np.float32) * 0.02, f"w{index}"))
        product = helper.make_node("MatMul", [x, f"w{index}"], [y])
    elif kind == "dq8":
        inits += [numpy_helper.from_array(rng.integers(-127, 128, (K, N), dtype=np.int8), f"w{index}"),
                  numpy_helper.from_array(rng.random(N, dtype=np.float32) * 1e-3, f"s{index}")]
        product = helper.make_node("DynamicQuantizeMatMul", [x, f"w{index}", f"s{index}"], [y], domain="com.microsoft")
    else:
        bits = 4 if kind == "nb4" else 8
        codes = rng.integers(0, 256, (N, K // BLOCK, BLOCK * bits // 8), dtype=np.uint8)
        inits += [numpy_helper.from_array(codes, f"q{index}"),
                  numpy_helper.from_array(rng.random(N * K // BLOCK, dtype=np.float32) * 1e-3, f"s{index}")]
        product = helper.make_node("MatMulNBits", [x, f"q{index}", f"s{index}"], [y], domain="com.microsoft",
                                   K=K, N=N, bits=bits, block_size=BLOCK, accuracy_level=4)
    return [product, helper.make_node("Slice", [y, "zero", "k", "last"], [f"z{index}"])], inits


def chain(kind: str, rng: np.random.Generator) -> ort.InferenceSession:
    """x (rows, K) -> (rows, K) through LAYERS products of kernel `kind`."""
    nodes, inits, x = [], [], "x"
    for index in range(LAYERS):
        more_nodes, more_inits = layer(kind, x, index, rng)
        nodes, inits, x = nodes + more_nodes, inits + more_inits, f"z{index}"
    inits += [numpy_helper.from_array(np.array([v], np.int64), name) for name, v in (("zero", 0), ("k", K), ("last", -1))]
    graph = helper.make_graph(nodes, kind, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, K])],
                              [helper.make_tensor_value_info(x, TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.add_session_config_entry("session.force_spinning_stop", "1")  # as the runtime's sessions
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="1,86,607", help="comma-separated token counts")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    sessions = {kind: chain(kind, rng) for kind in KERNELS}
    print(f"{'rows':>5} " + " ".join(f"{k + ' ms':>9}" for k in KERNELS) + " " + " ".join(f"{k + '/fp32':>9}" for k in KERNELS[1:]))
    for rows in (int(r) for r in args.rows.split(",")):
        feeds = {"x": rng.standard_normal((rows, K), np.float32)}
        times: dict[str, list[float]] = {kind: [] for kind in KERNELS}
        for session in sessions.values():
            session.run(None, feeds)
        for _ in range(args.rounds):
            for kind in rng.permutation(KERNELS):
                start = time.perf_counter()
                sessions[kind].run(None, feeds)
                times[kind].append((time.perf_counter() - start) * 1e3)
        ms = {kind: statistics.median(t) for kind, t in times.items()}
        speed = [ms["fp32"] / ms[kind] for kind in KERNELS[1:]]
        print(f"{rows:>5} " + " ".join(f"{ms[k]:>9.2f}" for k in KERNELS) + " " + " ".join(f"{s:>8.2f}x" for s in speed))


if __name__ == "__main__":
    main()
