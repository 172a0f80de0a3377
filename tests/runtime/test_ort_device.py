"""onnxruntime with the KV cache kept in the sessions' memory (IO binding, slot writes through
cuda-python) against the numpy-cache backend. Without a GPU the same bindings run on onnxruntime's
CPU memory, and cuda-python is tests/runtime/fake_trt.FakeCudart (its copies work on any pointer)."""

import sys

import numpy as np
import pytest

from ficoco_edge.errors import UsageError
from ficoco_edge.runtime import Runtime
from ficoco_edge.runtime.backends import OrtBackend
from ficoco_edge.runtime.cuda import Cuda
from ficoco_edge.runtime.kv import KVCache
from ficoco_edge.runtime.ort_device import BoundValue, OrtDeviceBackend, open_ort
from tests.runtime import fake_trt
from tests.runtime.conftest import needs_embedded

QUESTIONS = [("examples/red-triangle.png", "What color is the shape?"),
             ("examples/blue-circle.png", "What shape is in the image?")]


@needs_embedded
@pytest.mark.parametrize("one_llm_session", [True, False], ids=["llm.onnx", "prefill+decode"])
def test_bound_cache_answers_like_the_numpy_cache(embedded_exports, one_llm_session):
    directory = embedded_exports["ficoco-l"]  # per-layer cache lengths differ
    reference = Runtime.load(directory, device="cpu")
    cudart = fake_trt.FakeCudart()
    backend = OrtDeviceBackend(directory, reference.manifest, "cpu", None, Cuda(cudart), memory=("cpu", 0),
                               one_llm_session=one_llm_session)
    assert sorted(backend.sessions) == (["llm", "vision"] if one_llm_session else ["decode", "prefill", "vision"])
    bound = Runtime(directory, reference.manifest, backend, reference.tokenizer)
    steps = 6
    for image, question in QUESTIONS:
        want = reference.answer(image, question, max_new_tokens=steps, ignore_stop=True)
        cudart.copies.clear()
        got = bound.answer(image, question, max_new_tokens=steps, ignore_stop=True)
        assert got.token_ids == want.token_ids and got.text == want.text
        assert got.kv_bytes == want.kv_bytes
        # prefill fill + every decode append, key and value: strided device-to-device copies only
        assert cudart.copies == [("2d", 3)] * (2 * reference.layers * steps)


@needs_embedded
def test_decode_binds_the_cache_buffers_and_writes_them_in_place(embedded_exports):
    directory = embedded_exports["ficoco-v"]
    reference = Runtime.load(directory, device="cpu")
    backend = OrtDeviceBackend(directory, reference.manifest, "cpu", None, Cuda(fake_trt.FakeCudart()),
                               memory=("cpu", 0))
    embeds = np.random.default_rng(0).standard_normal((1, 40, reference.manifest["llm"]["hidden"])).astype(np.float32)
    _, caches = backend.prefill(embeds, image_start=3)
    lengths = [c.shape[2] for c in caches[::2]]
    llm = reference.manifest["llm"]
    cache = KVCache.allocate(lengths, 2, llm["kv_heads"], llm["head_dim"], None,
                             lambda shape, _: backend.zeros(shape), backend.write_slots)
    cache.fill(caches)
    pointers = [b.ptr for b in (*cache.keys, *cache.values)]
    _, new = backend.decode(embeds[:, :1], position=40, cache=cache)
    assert all(isinstance(b, BoundValue) for b in new)
    cache.append(new)
    assert [b.ptr for b in (*cache.keys, *cache.values)] == pointers  # the same buffers, written in place
    first = cache.keys[0].numpy()
    np.testing.assert_array_equal(first[:, :, :lengths[0]], caches[0].numpy())
    np.testing.assert_array_equal(first[:, :, lengths[0]], new[0].numpy()[:, :, 0])
    assert not first[:, :, lengths[0] + 1:].any()  # the slot left for the next token is still zero


def test_open_ort_keeps_numpy_caches_on_the_cpu_or_without_cuda_python(monkeypatch, tmp_path):
    made = []
    monkeypatch.setattr(OrtBackend, "__init__", lambda self, *args, **kwargs: made.append("host"))
    monkeypatch.setattr(OrtDeviceBackend, "__init__", lambda self, *args, **kwargs: made.append("device"))
    import onnxruntime as ort

    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    fake_trt.install(monkeypatch)
    open_ort(tmp_path, {}, "cpu", None)
    open_ort(tmp_path, {}, "auto", None)
    for name in ("cuda", "cuda.bindings", "cuda.bindings.runtime"):
        monkeypatch.setitem(sys.modules, name, None)
    open_ort(tmp_path, {}, "cuda", None)
    fake_trt.install(monkeypatch).cudaStreamCreate = lambda: (100, None)  # CUDA error: no device
    open_ort(tmp_path, {}, "auto", None)
    assert made == ["host", "device", "host", "host"]
    with pytest.raises(Exception, match="unknown device"):
        open_ort(tmp_path, {}, "tpu", None)


def test_tensorrt_provider_only_when_its_library_loads(monkeypatch, tmp_path):
    import ctypes
    import importlib.util
    import types

    from ficoco_edge.runtime.backends import ort_providers

    listed = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]

    def missing(name):
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setattr(ctypes, "CDLL", missing)
    assert ort_providers("auto", listed) == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setattr(ctypes, "CDLL", lambda name: object())
    assert ort_providers("auto", listed) == listed
    assert ort_providers("cpu", listed) == ["CPUExecutionProvider"]
    # a GPU build ships the provider's library, which links the TensorRT it needs: that is what loads
    provider = tmp_path / "onnxruntime" / "capi" / "libonnxruntime_providers_tensorrt.so"
    provider.parent.mkdir(parents=True)
    provider.touch()
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name: types.SimpleNamespace(origin=str(tmp_path / "onnxruntime" / "__init__.py")))
    loaded = []
    monkeypatch.setattr(ctypes, "CDLL", loaded.append)
    assert ort_providers("auto", listed) == listed and loaded == [str(provider)]


def test_cuda_without_a_gpu_provider_names_the_fix(monkeypatch):
    from importlib import metadata

    from ficoco_edge.runtime.backends import ort_providers

    real_version = metadata.version

    def installed(*names):
        def version(name):
            if name in names:
                return "1.32.0"
            if name.startswith("onnxruntime"):
                raise metadata.PackageNotFoundError(name)
            return real_version(name)
        return version

    monkeypatch.setattr(metadata, "version", installed("onnxruntime"))
    with pytest.raises(UsageError, match="no CUDA or TensorRT provider; install onnxruntime-gpu"):
        ort_providers("cuda", ["CPUExecutionProvider"])
    # both packages installed, the CPU one's files on top: say how to undo it
    monkeypatch.setattr(metadata, "version", installed("onnxruntime", "onnxruntime-gpu"))
    with pytest.raises(UsageError, match=r"pip uninstall -y onnxruntime && pip install --force-reinstall"):
        ort_providers("cuda", ["CPUExecutionProvider"])
    assert ort_providers("auto", ["CPUExecutionProvider"]) == ["CPUExecutionProvider"]


@pytest.mark.parametrize("providers, version, combined", [
    (["CPUExecutionProvider"], "1.21.0", True), (["CPUExecutionProvider"], "1.20.1", False),  # pre-packs per kernel
    (["CUDAExecutionProvider", "CPUExecutionProvider"], "1.20.1", True),  # initializers copied per session
    (["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"], "1.31.1", False)])  # not run
def test_which_providers_open_the_combined_llm_graph(providers, version, combined):
    import types

    backend = OrtBackend.__new__(OrtBackend)
    backend.providers = providers
    assert backend._combined_saves_memory(types.SimpleNamespace(__version__=version)) is combined
