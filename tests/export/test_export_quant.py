"""fp16 / INT8 / INT4 exports of tiny LLaVAs: the expected ops and dtypes, onnx.checker, per-layer
cache lengths unchanged, next-token agreement with the fp32 graphs recorded in the manifest, and
the embedding table stored in the format the manifest names."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from ficoco_edge.errors import UsageError
from ficoco_edge.export import exporter
from ficoco_edge.runtime.backends import OrtBackend, shares_prepacked_weights
from ficoco_edge.runtime.kv import KVCache
from tests.export.conftest import METHODS, schedule_for

EXPECTED_OPS = {("int8", "ort"): {"MatMulInteger", "DynamicQuantizeLinear"},
                ("int4", "ort"): {"MatMulNBits"}, ("int4", "trt"): {"DequantizeLinear"},
                ("int8", "trt"): {"DequantizeLinear"}, ("fp16", "ort"): {"MatMul"}, ("fp16", "trt"): {"MatMul"}}
FLOAT_IO = {("int8", "ort"): "float", ("int4", "ort"): "float"}  # onnxruntime type names; the rest are fp16
# every method for the original three; the newer precisions on one method with and one without LLM reduction
CASES = [(m, q, t) for m in METHODS for q, t in list(EXPECTED_OPS)[:3]]
CASES += [(m, q, t) for m in ("none", "ficoco-vl") for q, t in list(EXPECTED_OPS)[3:]]


@pytest.mark.parametrize("method, quant, target", CASES)
def test_quantized_export(tiny_vlm, tmp_path, method, quant, target):
    fp32 = exporter.export(tiny_vlm, method, schedule_for(method), tmp_path / "fp32", budget=1.5)
    manifest = exporter.export(tiny_vlm, method, schedule_for(method), tmp_path / "q", budget=1.5,
                               quant=quant, target=target)
    assert (manifest["quant"], manifest["target"]) == (quant, target)
    assert manifest["llm_visual_tokens_per_layer"] == fp32["llm_visual_tokens_per_layer"]
    io_dtype = FLOAT_IO.get((quant, target), "float16")
    for name in ("prefill", "decode"):
        graph = manifest["graphs"][name]
        model = onnx.load(str(tmp_path / "q" / graph["file"]))
        onnx.checker.check_model(model, full_check=True)
        assert EXPECTED_OPS[(quant, target)] <= {n.op_type for n in model.graph.node}
        if target == "trt":
            assert all(n.domain in ("", "ai.onnx") for n in model.graph.node)
        assert {i["dtype"] for i in graph["inputs"] if i["name"] not in ("position", "past_lengths", "image_start")} \
            == {io_dtype}
        assert graph["outputs"][0]["dtype"] == io_dtype
    assert manifest["validation"]["next_token_agreement"] >= (0.9 if quant == "fp16" else 0.5)
    table = np.load(tmp_path / "q" / manifest["embedding"]["file"])
    assert manifest["embedding"]["format"] == "fp16" and table.dtype == np.float16
    assert list(table.shape) == manifest["embedding"]["shape"]
    size = lambda d, m: (tmp_path / d / "prefill.onnx").stat().st_size + m["graphs"]["prefill"]["weights_bytes"]  # noqa: E731
    assert size("q", manifest) < size("fp32", fp32)
    if target == "ort":
        assert_one_llm_session_matches_two(tmp_path / "q", manifest)


def assert_one_llm_session_matches_two(directory, manifest: dict) -> None:
    """A prefill and a decode step through the combined llm.onnx (one session) against prefill.onnx
    and decode.onnx in their own sessions."""
    one = OrtBackend(directory, manifest, "cpu")
    two = OrtBackend(directory, {k: v for k, v in manifest.items() if k != "llm_graph"}, "cpu")
    assert two.llm is None and (one.llm is not None) == shares_prepacked_weights(ort.__version__)
    llm, dtype = manifest["llm"], one.input_dtypes["prefill"]["inputs_embeds"]
    embeds = np.random.default_rng(0).standard_normal((1, manifest["visual_tokens"] + 6, llm["hidden"])).astype(dtype)
    (logits, caches), (want, want_caches) = (backend.prefill(embeds, 2) for backend in (one, two))
    # same kernels on the same inputs; onnxruntime may fuse a subgraph's fp16 nodes differently: a few ulp
    close = lambda a, b: np.testing.assert_allclose(a, b, rtol=0, atol=8 * np.finfo(b.dtype).eps * np.abs(b).max())  # noqa: E731
    close(logits, want)
    for a, b in zip(caches, want_caches, strict=True):
        close(a, b)
    cache = KVCache.allocate([c.shape[2] for c in caches[::2]], 1, llm["kv_heads"], llm["head_dim"], one.kv_dtype)
    cache.fill(caches)
    (logits, new), (want, want_new) = (backend.decode(embeds[:, :1], embeds.shape[1], cache) for backend in (one, two))
    close(logits, want)
    for a, b in zip(new, want_new, strict=True):
        close(a, b)


def test_fp32_export_keeps_an_fp32_table(tiny_vlm, tmp_path):
    manifest = exporter.export(tiny_vlm, "none", schedule_for("none"), tmp_path / "e")
    assert manifest["embedding"] == {"file": "embed_tokens.npy", "format": "fp32", "dtype": "float32",
                                     "shape": [1000, 64]} and manifest["embed_tokens"] == "embed_tokens.npy"
    assert np.load(tmp_path / "e" / "embed_tokens.npy").dtype == np.float32


def test_bad_quant_and_target(tiny_vlm, tmp_path):
    for kwargs, message in [({"quant": "int2"}, "unknown quant"), ({"target": "tpu"}, "unknown target")]:
        with pytest.raises(UsageError, match=message):
            exporter.export(tiny_vlm, "none", schedule_for("none"), tmp_path / "x", **kwargs)
    assert not (tmp_path / "x").exists()
