"""Matrix-multiply FLOPs of an exported graph, read from the shapes it runs with."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx


def matmul_flops(path: Path, feeds: dict[str, np.ndarray]) -> int:
    """2·M·K·N summed over every MatMul of the graph at `path`, run once on `feeds`.

    The graph is copied with each MatMul's first input and output exposed as outputs, so the
    count uses the real (data-dependent or dynamic) shapes, not a formula.
    """
    import onnxruntime as ort

    model = onnx.load(str(path))
    products = [n for n in model.graph.node if n.op_type == "MatMul"]
    exposed = {o.name for o in model.graph.output} | set(feeds)
    for name in dict.fromkeys(t for n in products for t in (n.input[0], n.output[0])):
        if name not in exposed:
            model.graph.output.append(onnx.ValueInfoProto(name=name))
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    wanted = {i.name for i in sess.get_inputs()}
    values = dict(zip((o.name for o in sess.get_outputs()), sess.run(None, {k: v for k, v in feeds.items() if k in wanted})))
    values.update(feeds)
    return sum(2 * values[n.output[0]].size * values[n.input[0]].shape[-1] for n in products)
