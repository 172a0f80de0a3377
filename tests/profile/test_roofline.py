"""Device predictions against hand-computed values, and the fits verdict on both sides of the limit."""

import pytest

from ficoco_edge.arch import load_arch
from ficoco_edge.errors import UsageError
from ficoco_edge.plan import solve_for_method
from ficoco_edge.profile.devices import load_device
from ficoco_edge.profile.roofline import (Workload, decode_ceiling, fits, footprint, largest_batch, largest_context,
                                          predict, prefill_ceiling)

ARCH = load_arch("llava-1.5-7b")
FULL = solve_for_method("none")
V15 = solve_for_method("ficoco-v", 1.5)  # 55 visual tokens kept -> 115 LLM tokens


def hand_prefill_ops_7b(s=636, n=577, used=23):
    """LLaVA-1.5-7B prefill, every term written out: causal LLM, CLIP-L up to its layer 22, projector."""
    h, i, layers, heads, vocab = 4096, 11008, 32, 32, 32000
    pairs = s * (s + 1) // 2
    llm_layer = 2 * s * 4 * h * h + 4 * h * pairs + 5 * heads * pairs + 18 * h * s + 6 * s * h * i
    llm = layers * llm_layer + 2 * h * vocab
    hv, iv, vheads = 1024, 4096, 16
    clip_layer = 8 * n * hv * hv + 4 * hv * n * n + 5 * vheads * n * n + 18 * hv * n + 4 * n * hv * iv
    vision = used * clip_layer + 2 * 576 * 3 * 14 * 14 * hv
    projector = 2 * 576 * (hv * h + h * h)
    return llm + vision + projector


def test_ttft_ceiling_compute_bound_by_hand():
    nano = load_device("jetson-orin-nano-8gb")
    seconds, bound = prefill_ceiling(Workload(ARCH, FULL, "fp16"), nano)
    assert bound == "compute"
    assert seconds == pytest.approx(hand_prefill_ops_7b() / 10.2e12, rel=1e-9)  # ~0.857 s


def test_ttft_ceiling_memory_bound_by_hand():
    h100 = load_device("h100-sxm")
    seconds, bound = prefill_ceiling(Workload(ARCH, V15, "fp16"), h100)
    weights, kv = 2 * 7_062_902_784, 2 * 32 * 115 * 4096 * 2
    assert bound == "memory"
    assert seconds == pytest.approx((weights + kv) / 3.35e12, rel=1e-12)  # 4.23 ms


def test_decode_ceiling_by_hand():
    nano = load_device("jetson-orin-nano-8gb")
    seconds, bound = decode_ceiling(Workload(ARCH, FULL, "fp16"), nano)
    read = 2 * (6_476_005_376 + 131_072_000) + 333_447_168  # LLM linears + LM head + KV of 636 tokens
    assert bound == "memory"
    assert seconds == pytest.approx(read / 68e9, rel=1e-12)
    assert predict(Workload(ARCH, FULL, "fp16"), nano).decode_tokens_per_s == pytest.approx(5.019, abs=0.001)
    # batch 4 at a longer context: weights once, four caches
    work = Workload(ARCH, FULL, "int4", batch=4, context=316)
    seconds, _ = decode_ceiling(work, nano)
    kv4 = 4 * 2 * 32 * (576 + 316) * 4096 * 2
    from ficoco_edge.profile.footprint import decode_weight_bytes

    assert seconds == pytest.approx((decode_weight_bytes(ARCH, "int4") + kv4) / 68e9, rel=1e-12)


def test_int8_uses_the_int8_peak():
    agx = load_device("jetson-agx-orin-64gb")
    fp16, _ = prefill_ceiling(Workload(ARCH, FULL, "fp16"), agx)
    int8, _ = prefill_ceiling(Workload(ARCH, FULL, "int8"), agx)
    assert fp16 / int8 == pytest.approx(85.0 / 42.5)


@pytest.mark.parametrize("quant, expected", [("fp16", False), ("int8", False), ("int4", True)])
def test_llava_7b_on_an_8gb_orin_nano(quant, expected):
    nano = load_device("jetson-orin-nano-8gb")
    p = predict(Workload(ARCH, FULL, quant), nano)
    assert p.fits is expected
    assert (p.largest_batch >= 1) is expected


@pytest.mark.parametrize("quant", ["fp16", "int4"])
def test_fits_on_both_sides_of_the_limit(quant):
    work = Workload(ARCH, V15, quant, batch=2, context=100)
    need = footprint(work).total
    assert fits(work, need) and not fits(work, need - 1)
    assert need == footprint(work).weights + footprint(work).kv + footprint(work).activations


def test_largest_batch_and_context_are_tight():
    nano = load_device("jetson-orin-nano-8gb")
    usable = nano.usable_bytes
    work = Workload(ARCH, FULL, "int4")
    b = largest_batch(work, usable)
    assert b == 7
    assert fits(work.with_(batch=b), usable) and not fits(work.with_(batch=b + 1), usable)
    c = largest_context(work, usable)
    assert fits(work.with_(context=c), usable) and not fits(work.with_(context=c + 1), usable)
    assert largest_context(Workload(ARCH, FULL, "fp16"), usable) == 0


def test_usable_memory_is_memory_minus_reserved():
    nano = load_device("jetson-orin-nano-8gb")
    assert nano.usable_bytes == int((8.0 - 1.5) * 2**30)


@pytest.mark.parametrize("changes, needle", [({"batch": 0}, "--batch"), ({"context": 10}, "--context"),
                                             ({"quant": "int2"}, "int2"), ({"kv_bits": 3}, "KV bits")])
def test_bad_workloads(changes, needle):
    with pytest.raises(UsageError, match=needle):
        Workload(**{"arch": ARCH, "schedule": FULL, "quant": "fp16", **changes})
