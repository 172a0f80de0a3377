"""Resident memory: parameter counts against a real transformers model, KV formula, measured KV
of the tiny model through the measured-mode helpers (CPU)."""

import pytest
import torch

from ficoco_edge.arch import load_arch
from ficoco_edge.cost import kv_bytes
from ficoco_edge.models.llava import image_tokens_for, reduced
from ficoco_edge.plan import solve_for_method
from ficoco_edge.profile.footprint import (decode_weight_bytes, kv_cache_bytes, linear_weight_bytes, param_counts,
                                          resident_weight_bytes)
from ficoco_edge.profile.measure import prefill_memory, prompt_ids

LLAVA_7B_PARAMS = 7_062_902_784


def test_param_counts_equal_the_transformers_model(tiny_llava):
    counts = param_counts(load_arch("tiny"))
    assert counts.total == sum(p.numel() for p in tiny_llava.parameters())
    linears = [m for n, m in tiny_llava.named_modules() if isinstance(m, torch.nn.Linear) and n != "lm_head"]
    assert counts.linear == sum(m.weight.numel() for m in linears)
    assert counts.linear_rows == sum(m.out_features for m in linears)


def test_llava_7b_weights_by_hand():
    arch = load_arch("llava-1.5-7b")
    assert param_counts(arch).total == LLAVA_7B_PARAMS
    assert resident_weight_bytes(arch, "fp16") == 2 * LLAVA_7B_PARAMS  # 14.126 GB; measured on the H100: +6 KB buffers
    p = param_counts(arch)
    assert resident_weight_bytes(arch, "int8") == p.linear + 4 * p.linear_rows + 2 * (p.lm_head + p.other)
    assert linear_weight_bytes(4096 * 4096, 4096, "int4") == 4096 * 4096 // 2 + 4096 * 4096 // 64 + 4 * 1024
    # a decode step reads the LLM linears and the fp16 LM head, not the vision tower
    assert decode_weight_bytes(arch, "fp16") == 2 * (6_476_005_376 + 131_072_000)


def test_kv_formula_636_tokens_is_333_4_mb():
    arch = load_arch("llava-1.5-7b")
    kv = kv_cache_bytes(arch, [636] * 32)
    assert kv == 2 * 32 * 636 * 4096 * 2 == 333_447_168
    assert kv_cache_bytes(arch, [636] * 32, batch=3, kv_bits=8) == 3 * kv // 2


@pytest.mark.parametrize("method", ["ficoco-v", "ficoco-l", "ficoco-vl"])
def test_kv_formula_at_the_budget_schedule(method):
    arch = load_arch("llava-1.5-7b")
    tokens = solve_for_method(method, 1.5).llm_tokens_per_layer(32, 60)
    assert kv_cache_bytes(arch, tokens) == sum(2 * s * 4096 * 2 for s in tokens)


@pytest.mark.parametrize("method", ["none", "ficoco-l", "ficoco-vl"])
def test_measured_cache_of_the_tiny_model_equals_the_formula(tiny_llava, tiny_arch, method):
    schedule = solve_for_method(method, None if method == "none" else 1.5)
    with reduced(tiny_llava, method, schedule):
        ids = prompt_ids(tiny_arch.llm.vocab, tiny_llava.config.image_token_id, image_tokens_for(tiny_llava), 60, 2)
        measured = prefill_memory(tiny_llava, ids, torch.randn(2, 3, 336, 336))
    tokens = schedule.llm_tokens_per_layer(tiny_arch.llm.layers, 60)
    assert measured["kv_tokens_per_layer"] == tokens
    assert measured["kv_bytes"] == 2 * kv_bytes(tiny_arch.llm, tokens, 4)  # batch 2, fp32 cache
    assert measured["activation_peak_bytes"] is None  # peaks are read on CUDA only


def test_prompt_ids_hold_one_image_span():
    ids = prompt_ids(1000, 999, 50, 60, 2)
    assert ids.shape == (2, 110)
    assert ((ids == 999).sum(1) == 50).all()
    assert (ids[:, 35:85] == 999).all()
