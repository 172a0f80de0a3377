"""Where does TensorRT stop building a graph of a `--target trt` export?

    python3 benchmarks/tensorrt86/bisect_build.py EXPORT --trt-python benchmarks/tensorrt86/py311 [--graph prefill]

1. Builds the whole graph with build-engine's settings and profile, once as is and (TensorRT 8.6)
   once with the preview feature FASTER_DYNAMIC_SHAPES_0805 off, the DL-compiler path for
   dynamic shapes that raises TensorRT 8.6's internal "Could not find any implementation for
   node {ForeignNode[...]}" errors.
2. If the graph as is fails: cuts it after each float output of a residual-stream node (Add,
   MatMul, GatherElements, ScatterElements, in graph order), builds the cut graph (only the inputs
   it reads; build-engine's default settings, compiler on) and bisects for the first cut that
   fails, printing the nodes between the last cut that built and the first that did not. Assumes
   that a later cut, which contains an earlier one's ancestors, fails if the earlier one does.
   Cut graphs carry their weights inline, so graphs over 2 GB do not fit (onnx's protobuf limit).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ficoco_edge.export.engine import network_flags, profiles, TextRange

CUT_OPS = {"Add", "MatMul", "GatherElements", "ScatterElements"}


def build_file(path: str, shapes: dict, opt_level: int, dynamic_compiler: bool) -> bool:
    """Build the ONNX file at `path` under build-engine's fp32 settings; whether an engine came out."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.ERROR)
    builder = trt.Builder(logger)
    network = builder.create_network(network_flags(trt, False))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(path):
        print("parse:", parser.get_error(0))
        return False
    config = builder.create_builder_config()
    config.clear_flag(trt.BuilderFlag.TF32)
    config.builder_optimization_level = opt_level
    feature = getattr(getattr(trt, "PreviewFeature", None), "FASTER_DYNAMIC_SHAPES_0805", None)
    if feature is not None and not dynamic_compiler:
        config.set_preview_feature(feature, False)
    names = {network.get_input(i).name for i in range(network.num_inputs)}
    used = {k: v for k, v in shapes.items() if k in names}
    if used:
        profile = builder.create_optimization_profile()
        for name, shape in used.items():
            profile.set_shape(name, shape["min"], shape["opt"], shape["max"])
        config.add_optimization_profile(profile)
    return builder.build_serialized_network(network, config) is not None


def build(python: str, model: onnx.ModelProto, shapes: dict, opt_level: int, dynamic_compiler: bool = True) -> bool:
    """build_file in `python` (the interpreter with TensorRT), on `model` saved with its weights inline."""
    import onnx

    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "cut.onnx")
        onnx.save(model, path)
        args = [python, __file__, "--build-only", path, json.dumps(shapes), str(opt_level), str(int(dynamic_compiler))]
        return subprocess.run(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0


def cut(model: onnx.ModelProto, output: str) -> onnx.ModelProto:
    """The ancestors of tensor `output`, with the graph inputs they read, as a model."""
    import onnx

    graph = model.graph
    producer = {o: n for n in graph.node for o in n.output}
    needed, stack, seen = [], [output], set()
    while stack:
        name = stack.pop()
        node = producer.get(name)
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        needed.append(node)
        stack += list(node.input)
    order = {id(n): i for i, n in enumerate(graph.node)}
    nodes = sorted(needed, key=lambda n: order[id(n)])
    read = {i for n in nodes for i in n.input}
    inputs = [i for i in graph.input if i.name in read]
    inits = [t for t in graph.initializer if t.name in read]
    out = onnx.helper.make_tensor_value_info(output, onnx.TensorProto.FLOAT, None)
    sub = onnx.helper.make_graph(nodes, "cut", inputs, [out], inits)
    return onnx.helper.make_model(sub, opset_imports=model.opset_import, ir_version=model.ir_version)


def float_cuts(model: onnx.ModelProto) -> list[str]:
    """Float outputs of residual-stream nodes, in graph order (types from symbolic shape inference)."""
    import onnx

    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    typed = SymbolicShapeInference.infer_shapes(model, auto_merge=True)
    floats = {v.name for v in typed.graph.value_info if v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT}
    return [n.output[0] for n in model.graph.node if n.op_type in CUT_OPS and n.output[0] in floats]


def main() -> None:
    if sys.argv[1:2] == ["--build-only"]:  # the TensorRT side: path, shapes (JSON), opt level, dynamic compiler
        path, shapes, level, dynamic = sys.argv[2:6]
        sys.exit(0 if build_file(path, json.loads(shapes), int(level), dynamic == "1") else 1)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("export", type=Path)
    ap.add_argument("--graph", default="prefill")
    ap.add_argument("--opt-level", type=int, default=0)
    ap.add_argument("--trt-python", default=sys.executable, help="the interpreter that imports tensorrt")
    args = ap.parse_args()
    import onnx

    manifest = json.loads((args.export / "manifest.json").read_text())
    shapes = profiles(manifest, TextRange())[args.graph]
    model = onnx.load(str(args.export / manifest["graphs"][args.graph]["file"]))  # weights inline
    print(f"{args.export.name}/{args.graph}: {len(model.graph.node)} nodes", flush=True)
    for dynamic in (True, False):
        t = time.perf_counter()
        ok = build(args.trt_python, model, shapes, args.opt_level, dynamic)
        print(f"whole graph, FASTER_DYNAMIC_SHAPES_0805 {'on' if dynamic else 'off'}: "
              f"{'built' if ok else 'FAILED'} ({time.perf_counter() - t:.1f} s)", flush=True)
        if dynamic and ok:
            return
    cuts = float_cuts(model)
    lo, hi = -1, len(cuts)  # cuts[lo] builds (-1: nothing), cuts[hi] fails (len: the whole graph)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        ok = build(args.trt_python, cut(model, cuts[mid]), shapes, args.opt_level)
        print(f"  cut {mid:4d}/{len(cuts)} after {cuts[mid]}: {'built' if ok else 'FAILED'}", flush=True)
        lo, hi = (mid, hi) if ok else (lo, mid)
    names = [n.output[0] for n in model.graph.node]
    first = names.index(cuts[lo]) + 1 if lo >= 0 else 0
    last = names.index(cuts[hi]) if hi < len(cuts) else len(names) - 1
    print(f"last cut that built: {cuts[lo] if lo >= 0 else '(none)'}; first that failed: "
          f"{cuts[hi] if hi < len(cuts) else '(whole graph)'}; the nodes from one to the other:")
    for node in model.graph.node[first:last + 1]:
        print(f"  {node.op_type:16s} {node.name}  {list(node.input)} -> {list(node.output)}")


if __name__ == "__main__":
    sys.exit(main())
