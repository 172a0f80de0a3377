"""Per-layer KV cache and sampling, against simple references: concatenation, the cost model's
formula, and a sort-and-loop nucleus filter."""

import os
import warnings

import numpy as np
import pytest

from ficoco_edge.arch import LLMArch
from ficoco_edge.cost import kv_bytes
from ficoco_edge.errors import UsageError
from ficoco_edge.runtime.kv import KVCache, kv_bytes_needed
from ficoco_edge.runtime.sampling import Sampler, nucleus


def test_cache_filled_in_place_equals_concatenation():
    rng = np.random.default_rng(0)
    lengths = [7, 7, 3]  # a reduced model: later layers cache fewer tokens
    cache = KVCache.allocate(lengths, 4, kv_heads=2, head_dim=5, dtype=np.float32)
    prefill = [rng.standard_normal((1, 2, s, 5)).astype(np.float32) for s in lengths for _ in (0, 1)]
    cache.fill(prefill)
    steps = [[rng.standard_normal((1, 2, 1, 5)).astype(np.float32) for _ in range(6)] for _ in range(3)]
    for new in steps:
        cache.append(new)
    for i in range(6):
        want = np.concatenate([prefill[i]] + [s[i] for s in steps], axis=2)
        buffer = (cache.keys if i % 2 == 0 else cache.values)[i // 2]
        np.testing.assert_array_equal(buffer[:, :, :want.shape[2]], want)
    assert cache.lengths.tolist() == [10, 10, 6] and cache.capacity == [11, 11, 7]


def test_cache_refuses_to_overflow():
    cache = KVCache.allocate([2], 1, 1, 1, np.float32)
    cache.fill([np.zeros((1, 1, 2, 1), np.float32)] * 2)
    cache.append([np.zeros((1, 1, 1, 1), np.float32)] * 2)
    with pytest.raises(ValueError, match="full"):
        cache.append([np.zeros((1, 1, 1, 1), np.float32)] * 2)


@pytest.mark.parametrize("dtype, width", [(np.float32, 4), (np.float16, 2)])
def test_allocated_bytes_equal_the_cost_model(dtype, width):
    llm = LLMArch(layers=4, hidden=64, intermediate=128, heads=4, kv_heads=2, vocab=100)
    prefill = [90, 90, 30, 30]
    cache = KVCache.allocate(prefill, 16, llm.kv_heads, llm.head_dim, dtype)
    want = kv_bytes(llm, [s + 16 for s in prefill], bytes_per_element=width)
    assert cache.nbytes == want == kv_bytes_needed(prefill, 16, llm.kv_heads, llm.head_dim, width)


def naive_nucleus(logits, top_p):
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    kept, total = [], 0.0
    for i in sorted(range(len(probs)), key=lambda i: -probs[i]):
        kept.append(i)
        total += probs[i]
        if total >= top_p:
            break
    out = np.zeros_like(probs)
    out[kept] = probs[kept]
    return out / out.sum()


@pytest.mark.parametrize("top_p", [0.05, 0.5, 0.9, 0.999, 1.0])
def test_nucleus_matches_a_sorting_loop(top_p):
    logits = np.random.default_rng(1).standard_normal(50) * 3
    np.testing.assert_allclose(nucleus(logits, top_p), naive_nucleus(logits, top_p), atol=1e-12)


def test_greedy_and_seeded_sampling():
    logits = np.random.default_rng(2).standard_normal((1, 30))
    assert Sampler()(logits) == int(logits.argmax())
    for dtype in (np.float32, np.float16):  # greedy reads the backend's logits as they come
        assert Sampler()(logits.astype(dtype).reshape(-1)) == int(logits.astype(dtype).argmax())
    assert Sampler(temperature=1.0, top_p=1e-9, seed=3)(logits) == int(logits.argmax())
    draws = [Sampler(temperature=1.0, seed=4)(logits) for _ in range(3)]
    assert len(set(draws)) == 1  # same seed, same token
    sampler = Sampler(temperature=1.0, seed=5)
    counts = np.bincount([sampler(logits) for _ in range(4000)], minlength=30) / 4000
    probs = nucleus(logits.reshape(-1), 1.0)
    assert np.abs(counts - probs).max() < 0.03


@pytest.mark.parametrize("kwargs", [{"temperature": -1}, {"temperature": float("nan")}, {"temperature": float("inf")},
                                    {"top_p": 0}, {"top_p": 1.5}, {"top_p": float("nan")}, {"seed": -1}])
def test_bad_sampling_settings(kwargs):
    with pytest.raises(UsageError):
        Sampler(**kwargs)


def test_a_vanishing_temperature_is_greedy_without_warnings():
    logits = np.random.default_rng(6).standard_normal(40) * 5
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert Sampler(temperature=1e-320, top_p=0.9, seed=0)(logits) == int(logits.argmax())


def test_session_options_stop_spinning_and_take_threads():
    import onnxruntime as ort

    from ficoco_edge.runtime.backends import session_options

    options = session_options(ort, 2)
    assert options.intra_op_num_threads == 2
    assert options.get_session_config_entry("session.force_spinning_stop") == "1"
    assert session_options(ort, None).intra_op_num_threads == 0  # onnxruntime's default
    for bad in (0, -3, 4 * (os.cpu_count() or 1) + 1):
        with pytest.raises(UsageError, match="--threads must be between 1 and"):
            session_options(ort, bad)
