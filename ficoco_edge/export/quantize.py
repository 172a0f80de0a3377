"""Weight quantization of the exported LLM graphs (prefill, decode); the vision graph stays fp32.

    int8: onnxruntime dynamic quantization (int8 per-channel weights, activations quantized per
          call) of the MatMuls with constant weights: the LLM's linear layers and LM head.
    int4: blocked 4-bit weights, block 32, symmetric. For onnxruntime (`--target ort`) the
          MatMulNBits contrib op with accuracy_level=4 (int8 activations on CPU); for TensorRT
          (`--target trt`) DequantizeLinear with a block size (opset 21) feeding a plain MatMul,
          since TensorRT does not run onnxruntime's contrib ops.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path

import onnx
import onnx.version_converter

from ficoco_edge.errors import UsageError

QUANTS = ("fp32", "int8", "int4")
TARGETS = ("ort", "trt")
INT4_BLOCK = 32
QDQ_OPSET = 21


def check_quant(quant: str, target: str) -> None:
    if quant not in QUANTS:
        raise UsageError(f"unknown quant {quant!r}; choose one of: {', '.join(QUANTS)}")
    if target not in TARGETS:
        raise UsageError(f"unknown target {target!r}; choose one of: {', '.join(TARGETS)}")
    if quant == "int8" and target == "trt":
        raise UsageError("int8 dynamic quantization uses onnxruntime-only ops; for TensorRT export fp32 "
                         "and build the engine with `ficoco-edge build-engine DIR --int8`, or use --quant int4")


def weight_matmuls(model: onnx.ModelProto) -> list[str]:
    """Names of MatMul nodes whose second input is a 2-D constant weight."""
    weights = {i.name for i in model.graph.initializer if len(i.dims) == 2}
    return [n.name for n in model.graph.node if n.op_type == "MatMul" and n.input[1] in weights]


@contextmanager
def _quiet_quantizer():
    """onnxruntime's quantizers log every node at INFO and advise pre-processing on the root logger."""
    loggers = [logging.getLogger(), logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def quantize_graph(src: Path, dst: Path, quant: str, target: str = "ort") -> None:
    """Write `src` with its weight MatMuls quantized to `dst`."""
    check_quant(quant, target)
    with _quiet_quantizer():
        _quantize(src, dst, quant, target)


def _quantize(src: Path, dst: Path, quant: str, target: str) -> None:
    model = onnx.load(str(src))
    nodes = weight_matmuls(model)
    if quant == "int8":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        # per-channel weight scales: per-tensor ones turned the embedded model's answers to noise
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, nodes_to_quantize=nodes, per_channel=True,
                         extra_options={"MatMulConstBOnly": True})
        return
    from onnxruntime.quantization import QuantFormat
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    ort = target == "ort"
    if not ort:  # blocked DequantizeLinear needs opset 21; convert the other ops properly first
        model = onnx.version_converter.convert_version(model, QDQ_OPSET)
    quantizer = MatMulNBitsQuantizer(model, bits=4, block_size=INT4_BLOCK, is_symmetric=True,
                                     accuracy_level=4 if ort else None, nodes_to_include=nodes,
                                     quant_format=QuantFormat.QOperator if ort else QuantFormat.QDQ)
    quantizer.process()
    onnx.save(quantizer.model.model, str(dst))
