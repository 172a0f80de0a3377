"""The TensorRT backend's logic against the onnxruntime backend, through stand-ins for TensorRT and
cuda-python (tests/runtime/fake_trt.py); no TensorRT engine is built or run here."""

import json
import sys

import numpy as np
import onnx
import pytest

from ficoco_edge.errors import UsageError
from ficoco_edge.manifest import sha256
from ficoco_edge.runtime import Runtime
from tests.helpers import copy_export
from tests.runtime import fake_trt
from tests.runtime.conftest import needs_embedded

QUESTIONS = [("examples/red-triangle.png", "What color is the shape?"),
             ("examples/blue-circle.png", "What shape is in the image?")]


def with_engines(source, directory):
    """A copy of the export at `source` whose "engines" are its ONNX graphs with their weights inside
    (what FakeTensorRT loads: like a real engine, one self-contained blob)."""
    copy_export(source, directory)
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest["engines"], manifest["target"] = {}, "trt"  # stands in for a --target trt export
    for name, graph in manifest["graphs"].items():
        (directory / f"{name}.engine").write_bytes(self_contained(directory / graph["file"]))
        manifest["engines"][name] = {"file": f"{name}.engine", "sha256": sha256(directory / f"{name}.engine")}
        manifest["files"][f"{name}.engine"] = manifest["engines"][name]["sha256"]
    (directory / "manifest.json").write_text(json.dumps(manifest))
    return directory


def self_contained(path):
    """The serialized graph at `path` with its external weights read back in (onnx.load refuses the
    hard-linked weights file of copy_export)."""
    model = onnx.load(str(path), load_external_data=False)
    weights = np.memmap(path.parent / "weights.bin", np.uint8, mode="r")
    for tensor in model.graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            where = {entry.key: int(entry.value) for entry in tensor.external_data if entry.key != "location"}
            tensor.raw_data = weights[where["offset"]:where["offset"] + where["length"]].tobytes()
            tensor.data_location = onnx.TensorProto.DEFAULT
            del tensor.external_data[:]
    return model.SerializeToString()


@needs_embedded
@pytest.mark.parametrize("capturable", [True, False], ids=["cuda-graphs", "capture-fails"])
def test_trt_backend_answers_like_onnxruntime(monkeypatch, embedded_exports, tmp_path, capturable):
    cudart = fake_trt.install(monkeypatch, capturable)
    directory = with_engines(embedded_exports["ficoco-l"], tmp_path / "export")  # per-layer cache lengths differ
    reference, engines = Runtime.load(directory), Runtime.load(directory, backend="trt")
    assert engines.backend.name == "tensorrt"
    layers = reference.layers
    for image, question in [*QUESTIONS, QUESTIONS[-1]]:
        want = reference.answer(image, question, max_new_tokens=6, ignore_stop=True)
        cudart.copies.clear()
        cudart.launches = cudart.mallocs = 0
        got = engines.answer(image, question, max_new_tokens=6, ignore_stop=True)
        assert got.token_ids == want.token_ids and got.text == want.text
        assert got.kv_bytes == want.kv_bytes
        # the cache stays on the device: prefill fill + every decode append are device-to-device copies
        assert cudart.copies.count(("2d", 3)) == 2 * layers * 6  # 1 fill + 5 appends, key and value
        assert 3 not in cudart.copies  # no plain device-to-device copy of whole buffers
        # 5 decode steps: enqueued, captured and launched, then launched 3 times (a new KV cache moves
        # the bindings, so an answer captures its own graph; 5 launches if it landed where the last
        # one was, which the previous graph then serves); a failed capture enqueues all 5
        assert cudart.launches in ((4, 5) if capturable else (0,))
    # the same question again: only its KV cache is allocated; every other buffer is reused
    assert cudart.mallocs == 2 * layers


def test_missing_engines_tensorrt_or_cuda_python(monkeypatch, tmp_path):
    manifest = {"target": "trt", "engines": {"vision": {"file": "vision.engine"}}}
    from ficoco_edge.runtime.cuda import GET_CUDA
    from ficoco_edge.runtime.trt_backend import GET_TENSORRT, TrtBackend

    with pytest.raises(UsageError, match="re-export it with `ficoco-edge export ... --target trt`"):
        TrtBackend(tmp_path, {"target": "ort"})
    with pytest.raises(UsageError, match="has no TensorRT engines: run `ficoco-edge build-engine"):
        TrtBackend(tmp_path, {"target": "trt"})
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(UsageError) as error:
        TrtBackend(tmp_path, manifest)
    assert str(error.value) == GET_TENSORRT
    fake_trt.install(monkeypatch)
    for name in ("cuda", "cuda.bindings", "cuda.bindings.runtime"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(UsageError) as error:
        TrtBackend(tmp_path, manifest)
    assert str(error.value) == GET_CUDA


def test_write_slots_is_a_strided_device_copy(monkeypatch):
    from ficoco_edge.runtime.kv import assign_slots
    from ficoco_edge.runtime.cuda import Cuda, DeviceArray, write_slots

    cuda = Cuda(fake_trt.install(monkeypatch))
    rng = np.random.default_rng(0)
    dst, src = rng.standard_normal((1, 3, 10, 4)).astype(np.float32), rng.standard_normal((1, 3, 2, 4)).astype(np.float32)
    device = DeviceArray.from_numpy(cuda, dst)
    write_slots(device, 7, DeviceArray.from_numpy(cuda, src))
    assign_slots(dst, 7, src)
    np.testing.assert_array_equal(device.numpy(), dst)


def test_graph_replay_launches_only_while_the_key_repeats(monkeypatch):
    from ficoco_edge.runtime.cuda import Cuda, GraphReplay

    cudart = fake_trt.install(monkeypatch)
    replay, runs = GraphReplay(Cuda(cudart)), []

    def enqueue():  # stream work: recorded while a graph is captured, done at once otherwise
        work = lambda: runs.append(1)  # noqa: E731
        cudart.captured.append(work) if cudart.captured is not None else work()

    # key -> (work done so far, graph launches so far): enqueued, captured + launched, launched;
    # a new key is enqueued, and the old key after it must be seen twice again before a launch
    steps = [("a", (1, 0)), ("a", (2, 1)), ("a", (3, 2)), ("b", (4, 2)), ("a", (5, 2)), ("a", (6, 3))]
    for step, (key, done) in enumerate(steps):
        replay.run(key, enqueue)
        assert (len(runs), cudart.launches) == done, f"step {step} ({key})"
    assert len(cudart.graphs) == 1  # a replaced graph is destroyed


def test_a_refused_shape_leaves_the_outputs_to_be_rebound(monkeypatch):
    """A run refused halfway through its inputs has already set the first ones' shapes in TensorRT:
    the next run must size its output buffers again even if its shapes then look unchanged."""
    from onnx import TensorProto, helper

    from ficoco_edge.runtime.cuda import Cuda
    from ficoco_edge.runtime.trt_backend import EngineRunner

    cudart = fake_trt.install(monkeypatch)
    value = lambda name: helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, "n"])  # noqa: E731
    graph = helper.make_graph([helper.make_node("Identity", ["a"], ["a_out"]), helper.make_node("Identity", ["b"], ["b_out"])],
                              "two", [value("a"), value("b")], [value("a_out"), value("b_out")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    engine = fake_trt.FakeEngine(model.SerializeToString(), cudart)
    runner = EngineRunner(sys.modules["tensorrt"], Cuda(cudart), engine, "two", graphs=False)
    context_set = runner.context.set_input_shape
    monkeypatch.setattr(runner.context, "set_input_shape", lambda name, shape: shape[1] <= 8 and context_set(name, shape))
    ones = lambda n: np.ones((1, n), np.float32)  # noqa: E731

    assert runner.run({"a": ones(2), "b": ones(2)})["a_out"].shape == (1, 2)
    with pytest.raises(UsageError, match="b of shape \\[1, 9\\] is outside the engine's profile"):
        runner.run({"a": ones(3), "b": ones(9)})
    out = runner.run({"a": ones(3) * 5, "b": ones(2)})
    np.testing.assert_array_equal(out["a_out"].numpy(), ones(3) * 5)
