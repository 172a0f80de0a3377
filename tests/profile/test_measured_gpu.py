"""Measured mode on a CUDA GPU (skipped without one): KV bytes the real 7B allocates equal the
formulas, and bitsandbytes int8 / 4-bit models run through every method."""

import pytest
import torch

from ficoco_edge.arch import load_arch
from ficoco_edge.cost import kv_bytes
from ficoco_edge.models.llava import image_tokens_for, reduced
from ficoco_edge.plan import solve_for_method
from ficoco_edge.profile.gpu import build_random, quantize
from ficoco_edge.profile.measure import MeasureSettings, measure_quant, prefill_memory, prompt_ids

pytestmark = pytest.mark.gpu
METHODS = ("none", "ficoco-v", "ficoco-l", "ficoco-vl")


def schedule(method, budget=1.5):
    return solve_for_method(method, None if method == "none" else budget)


@pytest.fixture(scope="module")
def llava_7b():
    model = build_random(load_arch("llava-1.5-7b"), "cuda")
    yield model
    del model
    torch.cuda.empty_cache()


@torch.no_grad()
@pytest.mark.parametrize("method", METHODS)
def test_7b_fp16_kv_bytes_equal_the_formula(llava_7b, method):
    arch = load_arch("llava-1.5-7b")
    s = schedule(method)
    with reduced(llava_7b, method, s):
        ids = prompt_ids(arch.llm.vocab, llava_7b.config.image_token_id, image_tokens_for(llava_7b), 60, 1).cuda()
        pixels = torch.randn(1, 3, 336, 336, device="cuda", dtype=torch.float16)
        measured = prefill_memory(llava_7b, ids, pixels)
    tokens = s.llm_tokens_per_layer(arch.llm.layers, 60)
    assert measured["kv_tokens_per_layer"] == tokens
    assert measured["kv_bytes"] == kv_bytes(arch.llm, tokens, 2)
    if method == "none":
        assert measured["kv_bytes"] == pytest.approx(333.4e6, rel=0.005)


@pytest.mark.parametrize("quant", ["fp16", "int8", "int4"])
def test_tiny_quantized_models_run_every_method(quant):
    if quant != "fp16":
        pytest.importorskip("bitsandbytes")
    arch = load_arch("tiny")
    settings = MeasureSettings(new_tokens=2, ttft_reps=1, decode_reps=1)
    rows = measure_quant(lambda: build_random(arch, "cuda"), arch, quant,
                         [(m, schedule(m)) for m in METHODS], settings)
    assert [r["method"] for r in rows] == list(METHODS)
    for r in rows:
        assert r["kv_bytes"] == r["kv_formula_bytes"]
        assert r["ttft_ms"] > 0 and r["decode_tokens_per_s"] > 0
        assert (r["quantized_layers"] > 0) == (quant != "fp16")


def test_quantize_shrinks_weights():
    pytest.importorskip("bitsandbytes")
    arch = load_arch("tiny")
    sizes = {}
    for quant in ("fp16", "int8", "int4"):
        torch.cuda.empty_cache()
        before = torch.cuda.memory_allocated()
        model = build_random(arch, "cuda")
        quantize(model, quant)
        sizes[quant] = torch.cuda.memory_allocated() - before
        del model
    # tiny tensors round up to the allocator's 512-byte blocks, so only fp16 is compared
    assert max(sizes["int8"], sizes["int4"]) < sizes["fp16"]
