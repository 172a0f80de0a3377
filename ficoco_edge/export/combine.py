"""The LLM's prefill and decode graphs as one onnxruntime graph, so that its weights are held once.

Each onnxruntime session pre-packs its own copy of every weight its kernels multiply by; prefill and
decode as two sessions hold the LLM twice (2 x 539 MB for the embedded model in fp32). In one
session whose two bodies read the same initializers, the copy is made once and shared:

    llm.onnx:  If(run_prefill)
                 then: the prefill graph's nodes   inputs: inputs_embeds, [image_start]
                 else: the decode graph's nodes    inputs: decode/inputs_embeds, decode/position, ...
               outputs: llm/logits, llm/key_0, llm/value_0, ...: the chosen branch's outputs, in order

The bodies read the initializers from the outer graph (each weight once, found by its place in the
shared weights file); decode's graph inputs and its own small constants are renamed with a prefix
so the two graphs' names do not meet. A caller feeds the idle branch's inputs with any tensors of
the declared shapes (only the chosen branch runs). Written for onnxruntime exports; TensorRT engines
are built from prefill.onnx and decode.onnx, which stay in the export.
"""

from __future__ import annotations

import os
from pathlib import Path

import onnx
from onnx import TensorProto, helper

LLM_FILE = "llm.onnx"
SWITCH = "run_prefill"
DECODE_PREFIX = "decode/"


def combine_llm(directory: Path, prefill_file: str, decode_file: str) -> dict:
    """Write LLM_FILE into `directory` from the two graph files there (their weights already in the
    shared weights file); returns its manifest entry."""
    directory = Path(directory)
    prefill = onnx.load(str(directory / prefill_file), load_external_data=False)
    decode = onnx.load(str(directory / decode_file), load_external_data=False)
    rename = _decode_names(prefill.graph, decode.graph)
    for node in decode.graph.node:
        node.input[:] = [rename.get(name, name) for name in node.input]
    prefill_names = {t.name for t in prefill.graph.initializer}
    own = [t for t in decode.graph.initializer if rename[t.name] not in prefill_names]
    for tensor in own:
        tensor.name = rename[tensor.name]
    inputs = [_renamed_value(i, rename[i.name]) for i in decode.graph.input]
    outputs = [_untyped_shape(o) for o in prefill.graph.output]
    branch = {"then_branch": helper.make_graph(list(prefill.graph.node), "prefill", [], list(prefill.graph.output)),
              "else_branch": helper.make_graph(list(decode.graph.node), "decode", [], list(decode.graph.output))}
    switch = helper.make_tensor_value_info(SWITCH, TensorProto.BOOL, [])
    graph = helper.make_graph([helper.make_node("If", [SWITCH], [o.name for o in outputs], "llm", **branch)], "llm",
                              [switch, *prefill.graph.input, *inputs], outputs, [*prefill.graph.initializer, *own])
    model = helper.make_model(graph, opset_imports=list(prefill.opset_import), ir_version=prefill.ir_version)
    tmp = directory / f".{LLM_FILE}.partial"
    tmp.write_bytes(model.SerializeToString())
    os.replace(tmp, directory / LLM_FILE)
    return {"file": LLM_FILE, "switch": SWITCH, "decode_prefix": DECODE_PREFIX,
            "weights_bytes": _external_bytes(graph.initializer)}


def _decode_names(prefill: onnx.GraphProto, decode: onnx.GraphProto) -> dict[str, str]:
    """Decode's initializer and input names in the combined graph: a weight stored in the weights
    file takes the name prefill gives the same stored bytes; everything else gets DECODE_PREFIX."""
    stored = {_place(t): t.name for t in prefill.initializer if t.data_location == TensorProto.EXTERNAL}
    names = {t.name: stored.get(_place(t), DECODE_PREFIX + t.name) if t.data_location == TensorProto.EXTERNAL
             else DECODE_PREFIX + t.name for t in decode.initializer}
    names.update({i.name: DECODE_PREFIX + i.name for i in decode.input})
    return names


def _place(tensor: TensorProto) -> tuple:
    return tuple((entry.key, entry.value) for entry in tensor.external_data)


def _renamed_value(value: onnx.ValueInfoProto, name: str) -> onnx.ValueInfoProto:
    copy = onnx.ValueInfoProto()
    copy.CopyFrom(value)
    copy.name = name
    return copy


def _untyped_shape(value: onnx.ValueInfoProto) -> onnx.ValueInfoProto:
    """The If's output for branch output `value`: "llm/" + its name (a body's names may not repeat an
    outer one), its element type, no shape (the branches' shapes differ)."""
    return helper.make_tensor_value_info(f"llm/{value.name}", value.type.tensor_type.elem_type, None)


def _external_bytes(initializers) -> int:
    return sum(int(dict(_place(t)).get("length", 0)) for t in initializers if t.data_location == TensorProto.EXTERNAL)
