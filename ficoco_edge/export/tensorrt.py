"""TensorRT readiness: check exported graphs against TensorRT's ONNX operator support (kept as data
in data/tensorrt_onnx_ops.json with its source). Engines are built by export/engine.py."""

from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path

import onnx

ONNX_DOMAINS = ("", "ai.onnx")


def support_table() -> dict:
    return json.loads((files("ficoco_edge.export") / "data" / "tensorrt_onnx_ops.json").read_text())


def tensorrt_problems(path: Path) -> list[str]:
    """Reasons TensorRT's ONNX parser would reject the graph at `path`; empty when none is found:
    an op outside the support list or outside the ONNX domain, an opset above the parser's, or a
    non-constant input where TensorRT needs a constant (TopK's K, Slice/Squeeze/Unsqueeze axes),
    or a scatter with a reduction."""
    table = support_table()
    model = onnx.load(str(path), load_external_data=False)
    supported, needs_constant = set(table["supported"]), table["constant_inputs"]
    problems = []
    opset = max(o.version for o in model.opset_import if o.domain in ONNX_DOMAINS)
    if opset > table["max_opset"]:
        problems.append(f"opset {opset} > {table['max_opset']}")
    constants = {i.name for i in model.graph.initializer}
    constants |= {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    for node in model.graph.node:
        if node.domain not in ONNX_DOMAINS:
            problems.append(f"{node.name}: {node.domain}.{node.op_type} is not a standard ONNX op")
        elif node.op_type not in supported:
            problems.append(f"{node.name}: {node.op_type} is not in TensorRT's ONNX operator list")
        reduction = next((a.s.decode() for a in node.attribute if a.name == "reduction"), "none")
        if node.op_type.startswith("Scatter") and reduction != "none":  # TensorRT 8's scatter layer has no reductions
            problems.append(f"{node.name}: {node.op_type} with reduction {reduction!r}")
        for index in needs_constant.get(node.op_type, []):
            if len(node.input) > index and node.input[index] and node.input[index] not in constants:
                problems.append(f"{node.name}: input {index} of {node.op_type} must be a constant for TensorRT")
    return problems
