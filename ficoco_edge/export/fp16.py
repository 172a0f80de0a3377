"""fp16 LLM graphs: every float tensor in half precision except the model's own fp32 islands.

Llama-family code upcasts on purpose in two places: RMSNorm computes mean(x²) in fp32 (x² of a
residual value above 256 overflows fp16) and the rotary table is built from positions in fp32
(at position 1000 an fp16 angle is off by up to 0.25 rad). Traced, each is a `Cast(to=float)`
followed by a few elementwise ops and a closing `Cast`. Those islands stay fp32, found from the
graph, not from node names. ScatterElements stays fp32 too (accumulating scatters), as
do onnxruntime's default fp32-only ops (TopK, Range, CumSum, ...). Graph inputs and outputs
become fp16 (inputs_embeds, K/V caches, logits); the manifest records each graph's dtypes.

onnxruntime's converter stores every tensor between two fp32 nodes as fp16 (fp32 -> Cast fp16 ->
Cast fp32), which would still overflow x² inside RMSNorm; `_drop_round_trips` wires such pairs
of Casts out, so an island's values never leave fp32.
"""

from __future__ import annotations

import logging
import warnings
from collections import defaultdict

import onnx
from onnx import TensorProto

HEAVY_OPS = {"MatMul", "Gemm", "MatMulNBits", "Conv", "MatMulInteger"}  # never pulled into an fp32 island
ISLAND_LIMIT = 32  # nodes; a walk that grows past this is not a local upcast and stays fp16
FP32_OPS = ("ScatterElements",)  # accumulations; onnxruntime's CPU kernel has no fp16 'add' reduction


def _constants(model: onnx.ModelProto) -> set[str]:
    names = {i.name for i in model.graph.initializer}
    return names | {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}


def _island(start: onnx.NodeProto, consumers: dict, constants: set[str]) -> set[str] | None:
    """Nodes reachable from an upcasting Cast whose every input is the island's own, a constant
    or absent, up to and including the closing Casts; None when the walk exceeds ISLAND_LIMIT."""
    island, produced, frontier = {start.name}, set(start.output), [start]
    while frontier:
        node = frontier.pop()
        for out in node.output:
            for user in consumers[out]:
                if user.name in island or user.op_type in HEAVY_OPS:
                    continue
                if all(not i or i in produced or i in constants for i in user.input):
                    island.add(user.name)
                    if len(island) > ISLAND_LIMIT:
                        return None
                    if user.op_type != "Cast":  # a Cast closes the island
                        produced.update(user.output)
                        frontier.append(user)
    return island


def fp32_islands(model: onnx.ModelProto) -> set[str]:
    """Names of the nodes that stay fp32 (see the module docstring)."""
    consumers = defaultdict(list)
    for node in model.graph.node:
        for name in node.input:
            consumers[name].append(node)
    constants = _constants(model)
    kept: set[str] = set()
    for node in model.graph.node:  # topological order: a closing Cast is never a new start
        to = next((a.i for a in node.attribute if a.name == "to"), None)
        if node.op_type != "Cast" or to != TensorProto.FLOAT or node.name in kept:
            continue
        island = _island(node, consumers, constants)
        if island is not None:
            kept |= island
    # constants read only inside islands stay fp32 too (an fp16 inv_freq would skew RoPE angles)
    return kept | {n.name for n in model.graph.node if n.op_type == "Constant"
                   and consumers[n.output[0]] and all(c.name in kept for c in consumers[n.output[0]])}


def _cast_to(node: onnx.NodeProto) -> int | None:
    return next((a.i for a in node.attribute if a.name == "to"), None) if node.op_type == "Cast" else None


def _drop_round_trips(model: onnx.ModelProto, fp32_nodes: set[str]) -> None:
    """Cast(fp32)(Cast(fp16)(t)) -> t where t comes from an fp32 node; unused Casts removed."""
    producer = {o: n for n in model.graph.node for o in n.output}
    alias = {}
    for node in model.graph.node:
        inner = producer.get(node.input[0]) if _cast_to(node) == TensorProto.FLOAT else None
        source = producer.get(inner.input[0]) if inner is not None and _cast_to(inner) == TensorProto.FLOAT16 else None
        if source is not None and source.name in fp32_nodes:
            alias[node.output[0]] = inner.input[0]
    for node in model.graph.node:
        node.input[:] = [alias.get(i, i) for i in node.input]
    used = {i for n in model.graph.node for i in n.input} | {o.name for o in model.graph.output}
    while True:  # remove Casts nobody reads (a removed Cast can orphan the one before it)
        dead = [n for n in model.graph.node if n.op_type == "Cast" and n.output[0] not in used]
        if not dead:
            return
        for node in dead:
            model.graph.node.remove(node)
        used = {i for n in model.graph.node for i in n.input} | {o.name for o in model.graph.output}


def _sort_topologically(model: onnx.ModelProto) -> None:
    """Stable topological order (the converter appends its Casts after their readers)."""
    nodes = list(model.graph.node)
    available = {i.name for i in model.graph.input} | {i.name for i in model.graph.initializer} | {""}
    ordered, pending = [], nodes
    while pending:
        waiting = []
        for node in pending:
            if all(i in available for i in node.input):
                ordered.append(node)
                available.update(node.output)
            else:
                waiting.append(node)
        if len(waiting) == len(pending):
            raise ValueError(f"graph has a cycle or an undefined input at {waiting[0].name}")
        pending = waiting
    del model.graph.node[:]
    model.graph.node.extend(ordered)


def to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model with fp16 tensors, inputs and outputs, fp32 islands kept (module docstring)."""
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    for i, node in enumerate(model.graph.node):  # the converter blocks by name: give every node one
        node.name = node.name or f"unnamed_{node.op_type}_{i}"
    blocked = sorted(fp32_islands(model))
    quiet = logging.getLogger("onnxruntime.transformers.float16")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # it warns about every constant it clamps to the fp16 range
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            converted = convert_float_to_float16(model, keep_io_types=False, node_block_list=blocked,
                                                 op_block_list=[*DEFAULT_OP_BLOCK_LIST, *FP32_OPS])
    finally:
        quiet.setLevel(level)
    fp32_nodes = set(blocked) | {n.name for n in converted.graph.node if n.op_type in (*DEFAULT_OP_BLOCK_LIST, *FP32_OPS)}
    _drop_round_trips(converted, fp32_nodes)
    _sort_topologically(converted)
    return converted
