"""Weight quantization of constant-weight MatMuls, written as graph rewrites.

Scales are rounded to fp16 *before* the integers are computed, so storing them as fp16 is exact:
symmetric int4 block-32 costs 4 + 16/32 bits = 0.5625 bytes per parameter.

    int4 (onnxruntime): MatMulNBits (com.microsoft), block 32, accuracy_level 4, on min/max blocks
        (`quantize_minmax`): each block of 32 along K spans [min, max] in 16 steps, as GGUF's Q4_1
        does, so Q4_1 weights (the embedded model's LLM) come back exactly. MatMulNBits' own zero
        points cannot say that (uint4 ones round each block's offset: worse outputs than symmetric;
        float ones leave its int4 kernel, ~50x slower), so the block's offset is added as
        (x summed per block of 32) @ (K/32, N) offsets: +1 bit per weight (0.6875 bytes per
        parameter) and three small nodes per product. Scales must have the activation type (fp32),
        so they are stored fp16 and widened by a Cast of an initializer, which onnxruntime's
        constant folding turns back into an fp32 initializer at session creation, before
        MatMulNBits pre-packs its weights. int8 (the down projections): symmetric, no offsets.
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


def quantize_minmax(w: np.ndarray, block: int = BLOCK) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """w (K, N) float -> codes (K, N) uint8 in 0..15, scales float16 (K // block, N), offsets float32
    (K // block, N), blocked along K: w ≈ scale * (code - 8) + offset, i.e. min + scale * code with
    scale = (max - min) / 15 per block. A block already on such a grid (Q4_1: fp16 min and step)
    is reproduced exactly."""
    k, n = w.shape
    groups = w.reshape(k // block, block, n)
    low = groups.min(1)
    scale = ((groups.max(1) - low) / 15).astype(np.float16)
    step = scale.astype(np.float32)  # 0 for a constant block, which its offset alone then gives exactly
    codes = np.clip(np.rint((groups - low[:, None]) / np.where(step > 0, step, 1)[:, None]), 0, 15).astype(np.uint8)
    return codes.reshape(k, n), scale, (low + 8 * step).astype(np.float32)


def dequantize_minmax(codes: np.ndarray, scale: np.ndarray, offsets: np.ndarray, block: int = BLOCK) -> np.ndarray:
    """Inverse of quantize_minmax: (K, N) float32."""
    k, n = codes.shape
    blocks = (codes.reshape(k // block, block, n).astype(np.float32) - 8) * scale.astype(np.float32)[:, None, :]
    return (blocks + offsets[:, None, :]).reshape(k, n)


def _pack_nibbles(u: np.ndarray) -> bytes:
    """Pairs of 4-bit values (last axis, even length), first of each pair in the low nibble."""
    u = u.astype(np.uint8) & 0x0F
    return (u[..., 0::2] | (u[..., 1::2] << 4)).astype(np.uint8)


def _to_array(model: onnx.ModelProto, name: str) -> np.ndarray:
    tensor = next(i for i in model.graph.initializer if i.name == name)
    return numpy_helper.to_array(tensor).astype(np.float32)


def _replace(model: onnx.ModelProto, drop: set[str], initializers: list, nodes_before: list,
             swap: dict[int, list[onnx.NodeProto]]) -> None:
    """Drop initializers, add new ones, put nodes_before first and node i -> the nodes swap[i]."""
    kept = [i for i in model.graph.initializer if i.name not in drop]
    body = [new for i, node in enumerate(model.graph.node) for new in swap.get(i, [node])]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept + initializers)
    del model.graph.node[:]
    model.graph.node.extend(nodes_before + body)


def to_matmul_nbits(model: onnx.ModelProto, originals: dict[str, np.ndarray] | None = None, bits: int = 4,
                    accuracy_level: int = 4, select: Callable[[str], bool] = lambda node_name: True,
                    block_offsets: bool = False) -> int:
    """Replace every constant-weight MatMul whose K is a multiple of 32 (and whose node name
    `select` accepts) by MatMulNBits (4 or 8 bits, block 32 along K, fp16-stored scales); returns
    how many weights were quantized. block_offsets (4 bits): min/max blocks plus their offsets
    (quantize_minmax) instead of symmetric ones. `originals`: the fp32 weights by name when the
    graph's own are already rounded."""
    inits, before, swap, done = [], [], {}, set()
    for name, users in weight_matmuls(model).items():
        if not all(select(model.graph.node[i].name) for i in users):
            continue
        w = originals[name] if originals else _to_array(model, name)
        k, n = w.shape
        if k % BLOCK:
            continue
        if block_offsets:
            unsigned, scale, offsets = quantize_minmax(w)
            inits += [numpy_helper.from_array(offsets, f"{name}_offsets")] + _block_sum(k, inits)
        else:
            q, scale = quantize_symmetric(w, bits, BLOCK)
            unsigned = q.astype(np.int16) + 2 ** (bits - 1)  # MatMulNBits' default zero point: 8 / 128
        unsigned = unsigned.T.reshape(n, k // BLOCK, BLOCK)
        blob = _pack_nibbles(unsigned) if bits == 4 else unsigned.astype(np.uint8)
        inits += [numpy_helper.from_array(blob, f"{name}_q4"),
                  numpy_helper.from_array(np.ascontiguousarray(scale.T).reshape(-1), f"{name}_scales_fp16")]
        before.append(helper.make_node("Cast", [f"{name}_scales_fp16"], [f"{name}_scales"], f"{name}_scales_cast",
                                       to=TensorProto.FLOAT))
        for index in users:
            user = model.graph.node[index]
            product = f"{user.output[0]}_codes" if block_offsets else user.output[0]
            swap[index] = [helper.make_node(
                "MatMulNBits", [user.input[0], f"{name}_q4", f"{name}_scales"], [product], f"{user.name}_Q4",
                domain=MS_DOMAIN, K=k, N=n, bits=bits, block_size=BLOCK, accuracy_level=accuracy_level)]
            if block_offsets:
                swap[index] += _offset_nodes(user, name, k)
        done.add(name)
    still_used = {i for idx, node in enumerate(model.graph.node) if idx not in swap for i in node.input}
    _replace(model, done - still_used, inits, before, swap)
    if done and not any(o.domain == MS_DOMAIN for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))
    return len(done)


def _block_sum(k: int, inits: list) -> list:
    """The (K, K // 32) 0/1 matrix that sums x over each block of 32 (one per K, shared), if `inits`
    does not hold it yet."""
    name = f"block_sum_{k}"
    if any(i.name == name for i in inits):
        return []
    ones = np.kron(np.eye(k // BLOCK, dtype=np.float32), np.ones((BLOCK, 1), np.float32))
    return [numpy_helper.from_array(ones, name)]


def _offset_nodes(user: onnx.NodeProto, name: str, k: int) -> list[onnx.NodeProto]:
    """user's output = MatMulNBits' product + (x @ block_sum) @ offsets."""
    x, out = user.input[0], user.output[0]
    return [helper.make_node("MatMul", [x, f"block_sum_{k}"], [f"{out}_block_sums"], f"{user.name}_block_sums"),
            helper.make_node("MatMul", [f"{out}_block_sums", f"{name}_offsets"], [f"{out}_offsets"],
                             f"{user.name}_offsets"),
            helper.make_node("Add", [f"{out}_codes", f"{out}_offsets"], [out], f"{user.name}_plus_offsets")]


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
