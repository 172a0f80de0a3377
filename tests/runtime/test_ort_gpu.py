"""onnxruntime-gpu with the KV cache in GPU memory against onnxruntime on the CPU (needs a GPU,
onnxruntime-gpu and cuda-python; skipped otherwise)."""

import numpy as np
import onnxruntime as ort
import pytest

from ficoco_edge.errors import UsageError
from ficoco_edge.runtime import Runtime, ort_device
from ficoco_edge.runtime.backends import OrtBackend
from ficoco_edge.runtime.ort_device import OrtDeviceBackend
from tests.runtime.conftest import needs_embedded

pytestmark = [pytest.mark.gpu, needs_embedded,
              pytest.mark.skipif("CUDAExecutionProvider" not in ort.get_available_providers(),
                                 reason="needs onnxruntime-gpu")]

QUESTIONS = [("examples/red-triangle.png", "What color is the shape?"),
             ("examples/blue-circle.png", "What shape is in the image?"),
             ("examples/red-triangle.png", "Is there a circle in the image?")]


@pytest.mark.parametrize("method", ["ficoco-v", "ficoco-l"])
def test_cuda_answers_like_the_cpu(embedded_exports, method):
    cpu = Runtime.load(embedded_exports[method], device="cpu")
    gpu = Runtime.load(embedded_exports[method], device="cuda")
    assert isinstance(gpu.backend, OrtDeviceBackend) and gpu.backend.kv_location == "cuda"
    assert sorted(gpu.backend.sessions) == ["llm", "vision"]  # prefill and decode as llm.onnx's branches
    for image, question in QUESTIONS:
        want = cpu.answer(image, question, max_new_tokens=12)
        got = gpu.answer(image, question, max_new_tokens=12)
        assert got.kv_bytes == want.kv_bytes
        # fp32 on both; GPU kernels sum in another order: the same greedy tokens, or a tie broken late
        same = sum(a == b for a, b in zip(got.token_ids, want.token_ids))
        assert same >= min(len(want.token_ids), 8), (got.text, want.text)
    span = cpu.manifest["visual_tokens"]  # FiCoCo-L's filter needs the whole image span in the prompt
    embeds = np.random.default_rng(0).standard_normal((1, span + 20, cpu.manifest["llm"]["hidden"])).astype(np.float32)
    got, want = gpu.backend.prefill(embeds, 3)[0], cpu.backend.prefill(embeds, 3)[0]
    # onnxruntime's CUDA provider multiplies fp32 matrices in TF32 (10-bit mantissa) by default
    assert got.argmax() == want.argmax() and np.abs(got - want).max() < 0.1 * want.std()


def _no_cuda_python():
    raise UsageError("cuda-python is not installed")


@pytest.mark.parametrize("one_llm_session", [True, False])
def test_cuda_without_cuda_python_answers_like_the_cpu(embedded_exports, monkeypatch, one_llm_session):
    """Without cuda-python the CUDA provider runs with numpy caches copied in and out per step,
    through llm.onnx's If (one session) or prefill.onnx + decode.onnx."""
    monkeypatch.setattr(ort_device, "import_cudart", _no_cuda_python)
    cpu = Runtime.load(embedded_exports["ficoco-l"], device="cpu")
    gpu = Runtime.load(embedded_exports["ficoco-l"], device="cuda", one_llm_session=one_llm_session)
    assert type(gpu.backend) is OrtBackend and gpu.backend.providers[0] == "CUDAExecutionProvider"
    assert sorted(gpu.backend.sessions) == (["llm", "vision"] if one_llm_session else ["decode", "prefill", "vision"])
    for image, question in QUESTIONS:
        want = cpu.answer(image, question, max_new_tokens=12)
        got = gpu.answer(image, question, max_new_tokens=12)
        assert got.kv_bytes == want.kv_bytes
        same = sum(a == b for a, b in zip(got.token_ids, want.token_ids))  # TF32 on the GPU, as above
        assert same >= min(len(want.token_ids), 8), (got.text, want.text)
