"""The LLM's prefill and decode graphs as one onnxruntime graph, so that its weights are held once.

Each onnxruntime session pre-packs its own copy of every weight its kernels multiply by; prefill and
decode as two sessions hold the LLM twice (2 x 539 MB for the embedded model in fp32). In one
session whose two bodies read the same initializers, the copy is made once and shared:

    llm.onnx:  If(run_prefill)
                 then: the prefill graph's nodes   inputs: inputs_embeds, [image_start]
                 else: the decode graph's nodes    inputs: decode/inputs_embeds, decode/position, ...
               outputs: llm/logits, llm/key_0, llm/value_0, ...: the chosen branch's outputs, in order

The bodies read the initializers from the outer graph (each tensor once: a weight found by its
place in the shared weights file, a small constant by its values); decode's graph inputs and its
own constants are renamed with a prefix so the two graphs' names do not meet. A caller feeds the idle branch's inputs with any tensors of
the declared shapes (only the chosen branch runs). Written for onnxruntime exports; TensorRT engines
are built from prefill.onnx and decode.onnx, which stay in the export.
"""

from __future__ import annotations

import os
from pathlib import Path

import onnx
from onnx import TensorProto, helper, numpy_helper

LLM_FILE = "llm.onnx"
SWITCH = "run_prefill"
DECODE_PREFIX = "decode/"


def combine_llm(directory: Path, prefill_file: str, decode_file: str) -> dict:
    """Write LLM_FILE into `directory` from the two graph files there (their weights already in the
    shared weights file), checked by onnx's checker; returns its manifest entry."""
    directory = Path(directory)
    prefill = onnx.load(str(directory / prefill_file), load_external_data=False)
    decode = onnx.load(str(directory / decode_file), load_external_data=False)
    _check_combinable(prefill, decode)
    rename = _decode_names(prefill.graph, decode.graph)
    for node in decode.graph.node:
        node.input[:] = [rename.get(name, name) for name in node.input]
    prefill_names = {t.name for t in prefill.graph.initializer}
    own = [t for t in decode.graph.initializer if rename[t.name] not in prefill_names]
    for tensor in own:
        tensor.name = rename[tensor.name]
    inputs = [_renamed_value(i, rename[i.name]) for i in decode.graph.input]
    outputs = [_joint_output(k, a, b) for k, (a, b) in enumerate(zip(prefill.graph.output, decode.graph.output))]
    branch = {"then_branch": helper.make_graph(list(prefill.graph.node), "prefill", [], list(prefill.graph.output)),
              "else_branch": helper.make_graph(list(decode.graph.node), "decode", [], list(decode.graph.output))}
    switch = helper.make_tensor_value_info(SWITCH, TensorProto.BOOL, [])
    graph = helper.make_graph([helper.make_node("If", [SWITCH], [o.name for o in outputs], "llm", **branch)], "llm",
                              [switch, *prefill.graph.input, *inputs], outputs, [*prefill.graph.initializer, *own])
    model = helper.make_model(graph, opset_imports=list(prefill.opset_import), ir_version=prefill.ir_version)
    tmp = directory / f".{LLM_FILE}.partial"
    tmp.write_bytes(model.SerializeToString())
    onnx.checker.check_model(str(tmp))  # also refuses a body value that repeats a name seen from outside
    os.replace(tmp, directory / LLM_FILE)
    return {"file": LLM_FILE, "switch": SWITCH, "decode_prefix": DECODE_PREFIX,
            "weights_bytes": _external_bytes(graph.initializer)}


def _check_combinable(prefill: onnx.ModelProto, decode: onnx.ModelProto) -> None:
    """What the renaming relies on: no nested graphs or local functions (their references would not
    be renamed), the same operator sets, and outputs that pair up."""
    for model in (prefill, decode):
        nested = [n.name or n.op_type for n in model.graph.node
                  if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in n.attribute)]
        if nested or model.functions:
            raise ValueError(f"cannot combine graphs with nested graphs or functions: {nested or 'functions'}")
    opsets = [{(o.domain, o.version) for o in m.opset_import} for m in (prefill, decode)]
    if opsets[0] != opsets[1] or len(prefill.graph.output) != len(decode.graph.output):
        raise ValueError("prefill and decode differ in operator sets or output count; cannot combine them")


def _decode_names(prefill: onnx.GraphProto, decode: onnx.GraphProto) -> dict[str, str]:
    """Decode's initializer and input names in the combined graph: a tensor prefill also has (the
    same bytes in the weights file, or the same values kept in the graph) takes prefill's name;
    everything else gets DECODE_PREFIX."""
    known = {_identity(t): t.name for t in prefill.initializer}
    names = {t.name: known.get(_identity(t), DECODE_PREFIX + t.name) for t in decode.initializer}
    names.update({i.name: DECODE_PREFIX + i.name for i in decode.input})
    return names


def _identity(tensor: TensorProto) -> tuple:
    """Stored tensors by their place in the weights file; the rest by type, shape and values."""
    if tensor.data_location == TensorProto.EXTERNAL:
        return ("stored", _place(tensor))
    values = numpy_helper.to_array(tensor)
    return ("kept", tensor.data_type, tuple(tensor.dims), values.tobytes())


def _place(tensor: TensorProto) -> tuple:
    return tuple((entry.key, entry.value) for entry in tensor.external_data)


def _renamed_value(value: onnx.ValueInfoProto, name: str) -> onnx.ValueInfoProto:
    copy = onnx.ValueInfoProto()
    copy.CopyFrom(value)
    copy.name = name
    return copy


def _joint_output(index: int, prefill: onnx.ValueInfoProto, decode: onnx.ValueInfoProto) -> onnx.ValueInfoProto:
    """The If's output for the branches' outputs number `index`: "llm/" + prefill's name (a body's
    names may not repeat an outer one), their element type, and per axis the size both give, or a
    symbolic one where they differ (a cache: S_l tokens after prefill, 1 after a decode step)."""
    dims = [a if a == b else f"llm_{index}_{axis}" for axis, (a, b) in enumerate(zip(_dims(prefill), _dims(decode)))]
    return helper.make_tensor_value_info(f"llm/{prefill.name}", prefill.type.tensor_type.elem_type, dims)


def _dims(value: onnx.ValueInfoProto) -> list:
    return [d.dim_value if d.HasField("dim_value") else d.dim_param for d in value.type.tensor_type.shape.dim]


def _external_bytes(initializers) -> int:
    """Bytes of the weights file the initializers point into."""
    return sum(int(dict(_place(t)).get("length", 0)) for t in initializers if t.data_location == TensorProto.EXTERNAL)
