"""Symmetric weight quantization of constant-weight MatMuls, written as graph rewrites.

One numpy quantizer feeds both targets, so an int4 onnxruntime export and an int4 TensorRT
export dequantize to the same weights. Scales are rounded to fp16 *before* the integers are
computed, so storing them as fp16 is exact: int4 block-32 costs 4 + 16/32 bits = 0.5625 bytes
per parameter (fp32 scales would be 0.625).

    int4 (onnxruntime): MatMulNBits (com.microsoft), block 32, accuracy_level 4. Its scales must
        have the activation type (fp32), so they are stored fp16 and widened by a Cast of an
        initializer, which onnxruntime's constant folding turns back into an fp32 initializer at
        session creation, before MatMulNBits pre-packs its weights.
    int4 / int8 (TensorRT): DequantizeLinear (opset 21) of an INT4 weight with block 32 along K,
        or of an INT8 weight per output channel, fp16 scales, feeding MatMul in an fp16 graph
        (weight-only quantization, W4A16 / W8A16).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

BLOCK = 32
MS_DOMAIN = "com.microsoft"


def weight_matmuls(model: onnx.ModelProto) -> dict[str, list[int]]:
    """Constant 2-D weight initializer name -> indices of the MatMul nodes using it as their
    second input (one weight can serve several: FiCoCo-L recomputes q/k for its scores)."""
    weights = {i.name for i in model.graph.initializer if len(i.dims) == 2}
    found: dict[str, list[int]] = {}
    for index, node in enumerate(model.graph.node):
        if node.op_type == "MatMul" and node.input[1] in weights:
            found.setdefault(node.input[1], []).append(index)
    return found


def quantize_symmetric(w: np.ndarray, bits: int, block: int | None) -> tuple[np.ndarray, np.ndarray]:
    """w (K, N) float -> q (K, N) int8, scales float16: (K // block, N) blocked along K, or (N,)
    per output column when block is None. w ≈ q * scale.

    int4 follows onnxruntime's symmetric rule: the value of largest magnitude maps to -8, so 16
    levels are used; int8 uses ±127."""
    k, n = w.shape
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    groups = w.reshape(k // block, block, n) if block else w.reshape(1, k, n)
    if bits == 4:
        pick = np.abs(groups).argmax(1)[:, None, :]
        scale = np.take_along_axis(groups, pick, 1) / lo  # (g, 1, n), signed
    else:
        scale = np.abs(groups).max(1, keepdims=True) / hi
    scale = scale.astype(np.float16)
    scale[scale == 0] = 1  # an all-zero group: any scale is exact
    q = np.clip(np.rint(groups / scale.astype(np.float32)), lo, hi).astype(np.int8)
    return q.reshape(k, n), scale[:, 0, :] if block else scale[0, 0, :]


def dequantize(q: np.ndarray, scale: np.ndarray, block: int | None) -> np.ndarray:
    """Inverse of quantize_symmetric: (K, N) float32."""
    k, n = q.shape
    if not block:
        return q.astype(np.float32) * scale.astype(np.float32)
    return (q.reshape(k // block, block, n) * scale.astype(np.float32)[:, None, :]).reshape(k, n)


def _pack_nibbles(u: np.ndarray) -> bytes:
    """Pairs of 4-bit values (last axis, even length), first of each pair in the low nibble."""
    u = u.astype(np.uint8) & 0x0F
    return (u[..., 0::2] | (u[..., 1::2] << 4)).astype(np.uint8)


def _to_array(model: onnx.ModelProto, name: str) -> np.ndarray:
    tensor = next(i for i in model.graph.initializer if i.name == name)
    return numpy_helper.to_array(tensor).astype(np.float32)


def _replace(model: onnx.ModelProto, drop: set[str], initializers: list, nodes_before: list,
             swap: dict[int, onnx.NodeProto]) -> None:
    """Drop initializers, add new ones, put nodes_before first and node i -> swap[i]."""
    kept = [i for i in model.graph.initializer if i.name not in drop]
    body = [swap.get(i, n) for i, n in enumerate(model.graph.node)]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept + initializers)
    del model.graph.node[:]
    model.graph.node.extend(nodes_before + body)


def to_matmul_nbits(model: onnx.ModelProto, originals: dict[str, np.ndarray] | None = None, bits: int = 4,
                    accuracy_level: int = 4, select: Callable[[str], bool] = lambda node_name: True) -> int:
    """Replace every constant-weight MatMul whose K is a multiple of 32 (and whose node name
    `select` accepts) by MatMulNBits (4 or 8 bits, block 32 along K, fp16-stored scales); returns
    how many weights were quantized. `originals`: the fp32 weights by name when the graph's own
    are already rounded."""
    inits, before, swap, done = [], [], {}, set()
    for name, users in weight_matmuls(model).items():
        if not all(select(model.graph.node[i].name) for i in users):
            continue
        w = originals[name] if originals else _to_array(model, name)
        k, n = w.shape
        if k % BLOCK:
            continue
        q, scale = quantize_symmetric(w, bits, BLOCK)
        unsigned = (q.astype(np.int16) + 2 ** (bits - 1)).T.reshape(n, k // BLOCK, BLOCK)  # zero point 8 / 128
        blob = _pack_nibbles(unsigned) if bits == 4 else unsigned.astype(np.uint8)
        inits += [numpy_helper.from_array(blob, f"{name}_q4"),
                  numpy_helper.from_array(np.ascontiguousarray(scale.T).reshape(-1), f"{name}_scales_fp16")]
        before.append(helper.make_node("Cast", [f"{name}_scales_fp16"], [f"{name}_scales"], f"{name}_scales_cast",
                                       to=TensorProto.FLOAT))
        for index in users:
            user = model.graph.node[index]
            swap[index] = helper.make_node(
                "MatMulNBits", [user.input[0], f"{name}_q4", f"{name}_scales"], list(user.output), f"{user.name}_Q4",
                domain=MS_DOMAIN, K=k, N=n, bits=bits, block_size=BLOCK, accuracy_level=accuracy_level)
        done.add(name)
    still_used = {i for idx, node in enumerate(model.graph.node) if idx not in swap for i in node.input}
    _replace(model, done - still_used, inits, before, swap)
    if done and not any(o.domain == MS_DOMAIN for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))
    return len(done)


def to_dequantize_linear(model: onnx.ModelProto, bits: int, originals: dict[str, np.ndarray] | None = None) -> int:
    """Replace every constant MatMul weight (K a multiple of 32 for int4) by DequantizeLinear of
    an INT4 (block 32 along K) or INT8 (per output column) weight with fp16 scales; the output
    keeps the weight's name, so the MatMuls read it unchanged. Needs opset >= 21; returns the
    number of weights quantized."""
    inits, before, done = [], [], set()
    for name in weight_matmuls(model):
        w = originals[name] if originals else _to_array(model, name)
        k, n = w.shape
        if bits == 4 and k % BLOCK:
            continue
        q, scale = quantize_symmetric(w, bits, BLOCK if bits == 4 else None)
        if bits == 4:
            flat = q.reshape(-1)
            flat = np.concatenate([flat, np.zeros(len(flat) % 2, np.int8)])
            weight = helper.make_tensor(f"{name}_q", TensorProto.INT4, [k, n], _pack_nibbles(flat).tobytes(), raw=True)
            attrs = {"axis": 0, "block_size": BLOCK}
        else:
            weight, attrs = numpy_helper.from_array(q, f"{name}_q"), {"axis": 1}
        inits += [weight, numpy_helper.from_array(scale, f"{name}_scale")]
        before.append(helper.make_node("DequantizeLinear", [f"{name}_q", f"{name}_scale"], [name], f"{name}_dq", **attrs))
        done.add(name)
    _replace(model, done, inits, before, {})
    return len(done)
