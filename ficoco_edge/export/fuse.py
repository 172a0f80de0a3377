"""Sibling MatMul fusion: MatMuls that read the same input with their own constant weights become
one MatMul over the weights side by side, then a Split.

    x (…, K) @ Wq (K, Nq), x @ Wk (K, Nk), x @ Wv (K, Nv)  ->  Split(x @ [Wq Wk Wv], [Nq, Nk, Nv])

In a Llama layer that joins q/k/v (3 -> 1) and gate/up (2 -> 1), in a CLIP layer q/k/v. Each
output column is computed from the same weights as before, so results are unchanged (up to the
summation order of the GEMM kernel), and per-output-column quantization (int8 per channel, int4
blocks along K) gives the same integers. Fewer, wider GEMMs matter most when the token count is
small: after a strong reduction the prefill runs ~86 rows per GEMM.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper


def fuse_sibling_matmuls(model: onnx.ModelProto) -> int:
    """Fuse in place; returns how many MatMuls were removed. A weight used by any other node (FiCoCo-L
    recomputes q and k at its reducing layer with the same initializers) keeps its own MatMul."""
    graph = model.graph
    weights = {i.name: i for i in graph.initializer if len(i.dims) == 2}
    uses = Counter(name for node in graph.node for name in node.input)
    siblings: dict[str, list[int]] = {}
    for index, node in enumerate(graph.node):
        if node.op_type == "MatMul" and node.input[1] in weights and uses[node.input[1]] == 1:
            siblings.setdefault(node.input[0], []).append(index)
    groups = [g for g in siblings.values() if len(g) > 1 and _same_k_and_type([weights[graph.node[i].input[1]] for i in g])]
    if not groups:
        return 0
    replacement = {g[0]: _fused_nodes(graph, [graph.node[i] for i in g], weights) for g in groups}
    dropped = {i for g in groups for i in g}
    nodes = []
    for index, node in enumerate(graph.node):
        nodes += replacement.get(index, [])
        if index not in dropped:
            nodes.append(node)
    gone = {graph.node[i].input[1] for i in dropped}
    kept_weights = [i for i in graph.initializer if i.name not in gone]
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.initializer[:]
    graph.initializer.extend(kept_weights)
    return len(dropped) - len(groups)


def fuse_file(path: Path) -> int:
    """fuse_sibling_matmuls on the graph file at `path`, rewritten through a temporary file."""
    model = onnx.load(str(path))
    removed = fuse_sibling_matmuls(model)
    if removed:
        tmp = path.with_name(f".{path.name}.fused")
        onnx.save(model, str(tmp))
        tmp.replace(path)
    return removed


def _same_k_and_type(inits: list[onnx.TensorProto]) -> bool:
    return len({i.dims[0] for i in inits}) == 1 and len({i.data_type for i in inits}) == 1


def _fused_nodes(graph: onnx.GraphProto, members: list[onnx.NodeProto], weights: dict) -> list:
    """[Constant split sizes, MatMul over concatenated weights, Split into the members' outputs]."""
    arrays = [numpy_helper.to_array(weights[n.input[1]]) for n in members]
    base = members[0].name or members[0].output[0]
    fused = numpy_helper.from_array(np.concatenate(arrays, 1), f"{base}/fused_weight")
    graph.initializer.append(fused)
    sizes = numpy_helper.from_array(np.array([a.shape[1] for a in arrays], np.int64), f"{base}/fused_split")
    graph.initializer.append(sizes)
    wide = f"{base}/fused_output"
    return [helper.make_node("MatMul", [members[0].input[0], fused.name], [wide], f"{base}/fused"),
            helper.make_node("Split", [wide, sizes.name], [n.output[0] for n in members], f"{base}/fused_split", axis=-1)]
