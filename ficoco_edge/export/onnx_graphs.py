"""Trace the three graphs to ONNX (TorchScript exporter, opset 17) and check them with onnxruntime.

Validation runs each graph on fixed inputs in onnxruntime and in PyTorch; an fp32 graph whose
output differs beyond its tolerance raises ExportValidationError naming every failing output and
its largest difference.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch

from ficoco_edge.export.graphs import DecodeGraph, PrefillGraph, VisionGraph, mask_sources

OPSET = 17
TRT_OPSET = 16  # below 17, LayerNormalization is decomposed into ops every TensorRT 8.5+ parser reads


class ExportValidationError(RuntimeError):
    """onnxruntime and PyTorch disagree beyond tolerance on some outputs."""


@dataclass(frozen=True)
class Tolerance:
    atol: float
    rtol: float


FP32_TOLERANCE = Tolerance(atol=1e-4, rtol=1e-3)


def layer_names(prefix: str, layers: int) -> list[str]:
    return [f"{prefix}{kind}_{i}" for i in range(layers) for kind in ("key", "value")]


def export_graph(module: torch.nn.Module, args: tuple, path: Path, inputs: list[str], outputs: list[str],
                 dynamic: dict[str, dict[int, str]], opset: int = OPSET, contrib_ops: bool = False) -> None:
    """contrib_ops: the module emits com.microsoft ops (onnxruntime's contrib domain, version 1)."""
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python values are expected and checked below
        torch.onnx.export(module, args, str(path), input_names=inputs, output_names=outputs, dynamic_axes=dynamic,
                          opset_version=opset, dynamo=False, do_constant_folding=True,
                          custom_opsets={"com.microsoft": 1} if contrib_ops else None)


def export_all(model, image_tokens: int, layers: int, out: Path, example: dict, opset: int = OPSET,
               span_only: bool = False, fused_rope: bool = False) -> dict[str, dict]:
    """Write vision.onnx, prefill.onnx, decode.onnx; returns {graph: {"file", "inputs", "outputs"}}.
    span_only: prefill reduces with index arithmetic around the image span (TensorRT, graphs.py);
    fused_rope: RoPE as onnxruntime's com.microsoft.RotaryEmbedding (export/rope.py)."""
    keys = layer_names("", layers)
    past = layer_names("past_", layers)
    decode = DecodeGraph(model, fused_rope, mask_sources(example["past_lengths"].tolist()))
    specs = {
        "vision": (VisionGraph(model), (example["pixel_values"],), ["pixel_values"], ["image_embeds"], {}),
        "prefill": (PrefillGraph(model, image_tokens, span_only, fused_rope), (example["inputs_embeds"], example["image_start"]),
                    ["inputs_embeds", "image_start"], ["logits", *keys],
                    {"inputs_embeds": {1: "sequence"}, **{k: {2: f"length_{k.split('_')[1]}"} for k in keys}}),
        "decode": (decode, (example["token_embeds"], example["position"], example["past_lengths"], *example["past"]),
                   ["inputs_embeds", "position", "past_lengths", *past], ["logits", *layer_names("new_", layers)],
                   {p: {2: f"capacity_{p.split('_')[2]}"} for p in past}),
    }
    graphs = {}
    for name, (module, args, inputs, outputs, dynamic) in specs.items():
        export_graph(module, args, out / f"{name}.onnx", inputs, outputs, dynamic, opset, fused_rope and name != "vision")
        graphs[name] = {"file": f"{name}.onnx", "inputs": inputs, "outputs": outputs}
    return graphs


def session(path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def io_description(sess) -> dict:
    """{"inputs": [{name, shape, dtype}], "outputs": [...]}, shapes with symbolic axis names."""
    def describe(args):
        return [{"name": a.name, "shape": list(a.shape), "dtype": a.type.removeprefix("tensor(").rstrip(")")} for a in args]
    return {"inputs": describe(sess.get_inputs()), "outputs": describe(sess.get_outputs())}


def compare(names: list[str], got: list[np.ndarray], want: list[torch.Tensor], tol: Tolerance) -> dict[str, float]:
    """Largest |difference| per output; raises ExportValidationError listing those beyond tolerance."""
    diffs, failing = {}, []
    for name, g, w in zip(names, got, want):
        w = w.detach().float().numpy()
        if g.shape != w.shape:
            failing.append(f"{name}: shape {list(g.shape)} != {list(w.shape)}")
            diffs[name] = float("inf")
            continue
        diffs[name] = float(np.abs(g - w).max()) if g.size else 0.0
        if not np.allclose(g, w, atol=tol.atol, rtol=tol.rtol):
            failing.append(f"{name}: max |diff| {diffs[name]:.3g} (atol {tol.atol}, rtol {tol.rtol})")
    if failing:
        raise ExportValidationError("onnxruntime disagrees with PyTorch: " + "; ".join(failing))
    return diffs


def fold_constants(path: Path) -> None:
    """Rewrite the graph at `path` with onnxruntime's basic (provider-independent, standard-op)
    optimizations: on a graph with static input shapes this turns sizes computed from shapes, such
    as TopK's K, into constants, as TensorRT requires. Unused opset imports are dropped."""
    import onnxruntime as ort

    tmp = path.with_name(f".{path.name}.folded")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(tmp)
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    model = onnx.load(str(tmp))
    used = {n.domain for n in model.graph.node} | {""}
    kept = [o for o in model.opset_import if o.domain in used]
    del model.opset_import[:]
    model.opset_import.extend(kept)
    onnx.save(model, str(tmp))
    tmp.replace(path)


def fold_static_shapes(path: Path) -> None:
    """Replace every Shape node whose input has a fully static inferred shape by a constant, then
    fold constants (fold_constants). The TorchScript exporter keeps sizes such as the image span's
    length as Shape arithmetic even where the graph has a dynamic axis elsewhere; symbolic shape
    inference proves them static, so TopK's K becomes a constant, as TensorRT requires."""
    from onnx import helper, numpy_helper
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    model = onnx.load(str(path))
    inferred = SymbolicShapeInference.infer_shapes(model, auto_merge=True)
    shapes = {}
    for info in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]:
        dims = info.type.tensor_type.shape.dim
        shapes[info.name] = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    for node in model.graph.node:
        shape = shapes.get(node.input[0]) if node.op_type == "Shape" else None
        if shape is None or None in shape:
            continue
        attrs = {a.name: a.i for a in node.attribute}
        value = np.array(shape[attrs.get("start", 0):attrs.get("end", len(shape))], np.int64)
        node.CopyFrom(helper.make_node("Constant", [], list(node.output), node.name,
                                       value=numpy_helper.from_array(value)))
    onnx.save(model, str(path))
    fold_constants(path)
