"""Precision of the exported LLM graphs (prefill, decode); the vision graph stays fp32.

    quant  target  graph
    fp16   both    fp16 tensors and I/O, the model's fp32 islands kept (export/fp16.py)
    int8   ort     onnxruntime dynamic quantization: int8 per-channel weights, activations
                   quantized per call, on the MatMuls with a constant weight (fp32 graph). The MLP
                   down projections: with smoothed weights (export/smooth.py, from calibration
                   prompts), the same, their input rows first scaled to a max |x| of 1; without,
                   MatMulNBits 8-bit block 32 (activations quantized per block of 32)
    int8   trt     fp16 graph, INT8 per-channel weights through DequantizeLinear (W8A16)
    int4   ort     MatMulNBits, block 32, accuracy_level 4 (int8 activations on CPU), fp32 graph; min/max
                   blocks with fp32 block offsets (weights.quantize_minmax: GGUF Q4_1 weights exactly)
    int4   trt     fp16 graph, INT4 block-32 weights through DequantizeLinear, opset 21 (W4A16)

Quantized scales are fp16 everywhere (export/weights.py). TensorRT does not run onnxruntime's
contrib ops (MatMulNBits, DynamicQuantizeLinear), hence the standard-op forms for `--target trt`.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
import onnx.version_converter
from onnx import helper, numpy_helper

from ficoco_edge.errors import UsageError
from ficoco_edge.export import weights
from ficoco_edge.export.fp16 import to_fp16

QUANTS = ("fp32", "fp16", "int8", "int4")
TARGETS = ("ort", "trt")
INT4_BLOCK = weights.BLOCK
QDQ_OPSET = 21


def check_quant(quant: str, target: str) -> None:
    if quant not in QUANTS:
        raise UsageError(f"unknown quant {quant!r}; choose one of: {', '.join(QUANTS)}")
    if target not in TARGETS:
        raise UsageError(f"unknown target {target!r}; choose one of: {', '.join(TARGETS)}")


def weight_matmuls(model: onnx.ModelProto) -> list[str]:
    """Names of MatMul nodes whose second input is a 2-D constant weight."""
    return [model.graph.node[i].name for users in weights.weight_matmuls(model).values() for i in users]


@contextmanager
def _quiet_quantizer():
    """onnxruntime's quantizers log every node at INFO and advise pre-processing on the root logger."""
    loggers = [logging.getLogger(), logging.getLogger("onnxruntime.quantization")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def quantize_graph(src: Path, dst: Path, quant: str, target: str = "ort", smoothed: bool = False) -> None:
    """Write `src` (an fp32 LLM graph) at precision `quant` for `target` to `dst`; `smoothed`: its
    MLP weights were smoothed (export/smooth.py), so int8 may quantize the down projections' inputs."""
    check_quant(quant, target)
    if quant == "fp32":
        raise UsageError("quant fp32 is the traced graph itself; nothing to quantize")
    if quant == "int8" and target == "ort":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        model = onnx.load(str(src))
        if smoothed:
            scale_rows_to_unit_max(model, select=_outlier_input)
        nodes = [n for n in weight_matmuls(model) if smoothed or not _outlier_input(n)]
        with _quiet_quantizer():  # per-channel scales: per-tensor ones turned the embedded model's answers to noise
            quantize_dynamic(model, str(dst), weight_type=QuantType.QInt8, nodes_to_quantize=nodes,
                             per_channel=True, extra_options={"MatMulConstBOnly": True})
        if not smoothed:
            model = onnx.load(str(dst))
            weights.to_matmul_nbits(model, bits=8, select=_outlier_input)
            onnx.save(model, str(dst))
        return
    model = onnx.load(str(src))
    if quant == "int4" and target == "ort":
        weights.to_matmul_nbits(model, block_offsets=True)
    else:
        _to_fp16_graph(model, quant)
    onnx.save(model, str(dst))


def _outlier_input(node_name: str) -> bool:
    """MatMuls whose input carries large activation outliers: Llama-family MLP down projections.
    With one int8 scale per call over all tokens of a prefill, the embedded model's easy-VQA
    accuracy fell from 99.5% to 38% (the decode steps, one token per call, were not the cause);
    one scale per token (rows scaled) gave 94.0%, and with smoothed weights as well 97.5%."""
    return "down_proj" in node_name


def scale_rows_to_unit_max(model: onnx.ModelProto, select: Callable[[str], bool]) -> int:
    """Rewrite each constant-weight MatMul that `select` accepts (by node name), y = x @ W with x
    (..., rows, K), as y = ((x / m) @ W) * m, m = max |x| over K per row (1e-30 at least): the same
    product, but every row reaches a max |x| of 1, so one activation scale per call (dynamic
    quantization) serves all rows as if each had its own. Returns how many MatMuls were rewritten."""
    tiny = numpy_helper.from_array(np.array(1e-30, np.float32), "row_scale_floor")
    products = {i for users in weights.weight_matmuls(model).values() for i in users}
    nodes, count = [], 0
    for index, node in enumerate(model.graph.node):
        if index not in products or not select(node.name):
            nodes.append(node)
            continue
        x, y, name = node.input[0], node.output[0], node.name
        nodes += [helper.make_node("Abs", [x], [f"{y}_abs"], f"{name}_abs"),
                  _row_max(model, f"{y}_abs", f"{y}_row_max", f"{name}_row_max"),
                  helper.make_node("Max", [f"{y}_row_max", tiny.name], [f"{y}_row_scale"], f"{name}_row_scale"),
                  helper.make_node("Div", [x, f"{y}_row_scale"], [f"{y}_unit_rows"], f"{name}_unit_rows"),
                  helper.make_node("MatMul", [f"{y}_unit_rows", node.input[1]], [f"{y}_unit"], name),
                  helper.make_node("Mul", [f"{y}_unit", f"{y}_row_scale"], [y], f"{name}_rescale")]
        count += 1
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    if count:
        model.graph.initializer.append(tiny)
    return count


def _row_max(model: onnx.ModelProto, x: str, out: str, name: str) -> onnx.NodeProto:
    """ReduceMax over the last axis, keeping it, in the form of the model's opset (axes an input from 18)."""
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    if opset < 18:
        return helper.make_node("ReduceMax", [x], [out], name, axes=[-1], keepdims=1)
    if not any(i.name == "last_axis" for i in model.graph.initializer):
        model.graph.initializer.append(numpy_helper.from_array(np.array([-1], np.int64), "last_axis"))
    return helper.make_node("ReduceMax", [x, "last_axis"], [out], name, keepdims=1)


def _to_fp16_graph(model: onnx.ModelProto, quant: str) -> None:
    """fp16 in place; for int8/int4, weights quantized from their fp32 values, not fp16-rounded ones."""
    if quant == "fp16":
        model.CopyFrom(to_fp16(model))
        return
    used = weights.weight_matmuls(model)
    originals = {i.name: numpy_helper.to_array(i).astype(np.float32) for i in model.graph.initializer if i.name in used}
    # blocked / INT4 DequantizeLinear needs opset 21: convert the other ops properly first
    model.CopyFrom(to_fp16(onnx.version_converter.convert_version(model, QDQ_OPSET)))
    weights.to_dequantize_linear(model, 8 if quant == "int8" else 4, originals)
