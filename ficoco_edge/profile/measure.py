"""Measured mode: memory and latency of a patched LLaVA, per method x quant, on a CUDA GPU.

Per (quant): build (or load) the model, quantize it; per method: patch it (`models.llava.reduced`),
then on one prompt of `text_tokens` text tokens around the image span:
  - weights: bytes allocated once the model is built (after quantization), before any input;
  - KV: bytes of the cache a prefill leaves (keys + values of every layer) and its per-layer lengths;
  - activation peak: peak allocated during a prefill without a cache - allocated before it;
  - TTFT: `generate(max_new_tokens=1)` (vision tower, projector, prefill, first token), median;
  - decode: (time of generate(1 + N) - TTFT) / N, median over repetitions.
Units: bytes, milliseconds, tokens/s. Core functions also run on the CPU (tests); only the
command insists on CUDA.
"""

from __future__ import annotations

import gc
import statistics
import time
from dataclasses import dataclass

from ficoco_edge.arch import Arch
from ficoco_edge.cost import kv_bytes
from ficoco_edge.reduction.schedule import Schedule

IMAGE_AFTER = 35
"""Text tokens before the image span (LLaVA-1.5's system prompt and 'USER:' take about 35)."""


@dataclass(frozen=True)
class MeasureSettings:
    """How each configuration is run: prompt text tokens, batch, decoded tokens, repetitions."""

    text_tokens: int = 60
    batch: int = 1
    new_tokens: int = 32
    ttft_reps: int = 5
    decode_reps: int = 3
    seed: int = 0


def prompt_ids(vocab: int, image_token_id: int, n_image: int, text_tokens: int, batch: int, seed: int = 0):
    """(batch, text_tokens + n_image) token ids: random text ids (never the image id) with one
    contiguous span of n_image image tokens after IMAGE_AFTER text tokens."""
    import torch

    g = torch.Generator().manual_seed(seed)
    text = torch.randint(1, vocab - 1, (batch, text_tokens), generator=g)
    text[text == image_token_id] = 1
    at = min(IMAGE_AFTER, text_tokens)
    span = torch.full((batch, n_image), image_token_id)
    return torch.cat([text[:, :at], span, text[:, at:]], dim=1)


def cache_tensors(cache) -> list:
    """Key and value tensors of every layer of a transformers cache (DynamicCache in v5)."""
    if hasattr(cache, "layers"):
        return [t for layer in cache.layers for t in (layer.keys, layer.values) if t is not None]
    return [*cache.key_cache, *cache.value_cache]


def cache_bytes(cache) -> int:
    """Bytes of the storage behind the cache's tensors (shared storage counted once)."""
    seen = {}
    for t in cache_tensors(cache):
        storage = t.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
    return sum(seen.values())


def cache_lengths(cache) -> list[int]:
    """Tokens each layer caches (sequence axis of its keys)."""
    if hasattr(cache, "layers"):
        return [int(layer.keys.shape[-2]) for layer in cache.layers]
    return [int(k.shape[-2]) for k in cache.key_cache]


def _sync(device) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def _allocated(device) -> int:
    import torch

    return torch.cuda.memory_allocated(device) if torch.device(device).type == "cuda" else 0


def settle(device) -> int:
    """Collect garbage, release cached blocks; bytes allocated afterwards (0 on the CPU)."""
    import torch

    gc.collect()
    if torch.device(device).type == "cuda":
        torch.cuda.empty_cache()
    return _allocated(device)


def prefill_memory(model, ids, pixels) -> dict:
    """Two prefills: one without a cache gives the activation peak (peak allocated - allocated
    before: the transient tensors alone), one with a cache gives the KV bytes, its per-layer
    lengths and the total peak. Bytes; the peaks are None off CUDA."""
    import torch

    from ficoco_edge.models.hf_compat import output_cache

    device = ids.device
    cuda = device.type == "cuda"

    def run(use_cache: bool):
        before = settle(device)
        if cuda:
            torch.cuda.reset_peak_memory_stats(device)
        with torch.no_grad():
            out = model(input_ids=ids, pixel_values=pixels, use_cache=use_cache, logits_to_keep=1)
        _sync(device)
        return out, before, torch.cuda.max_memory_allocated(device) if cuda else None

    out, before, peak = run(False)
    activation = peak - before if cuda else None
    del out
    out, _, peak = run(True)
    cache = output_cache(out)
    kv, lengths = cache_bytes(cache), cache_lengths(cache)
    del out
    settle(device)
    return {"kv_bytes": kv, "kv_tokens_per_layer": lengths, "activation_peak_bytes": activation,
            "peak_allocated_bytes": peak}


def generate(model, ids, pixels, new_tokens: int):
    import torch

    with torch.no_grad():
        return model.generate(input_ids=ids, pixel_values=pixels, max_new_tokens=new_tokens,
                              min_new_tokens=new_tokens, do_sample=False, pad_token_id=0)


def median_seconds(fn, reps: int, device) -> float:
    """Median wall-clock seconds of `fn()` over `reps` runs, synchronizing the device around each."""
    times = []
    for _ in range(reps):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure_method(model, arch: Arch, method: str, schedule: Schedule, settings: MeasureSettings) -> dict:
    """Measure one method on an already built (and quantized) model; see the module docstring.

    kv_formula_bytes: `cost.kv_bytes` of the schedule's per-layer tokens at the model's float
    width (2 bytes for fp16), times the batch: the figure the measured `kv_bytes` must equal.
    """
    import torch

    from ficoco_edge.models.llava import image_tokens_for, reduced

    device = next(model.parameters()).device
    dtype = next(p for p in model.parameters() if p.is_floating_point()).dtype
    with reduced(model, method, schedule):
        n_image = image_tokens_for(model)
        ids = prompt_ids(model.config.text_config.vocab_size, model.config.image_token_id, n_image,
                         settings.text_tokens, settings.batch, settings.seed).to(device)
        size = model.config.vision_config.image_size
        g = torch.Generator().manual_seed(settings.seed + 1)
        pixels = torch.randn(settings.batch, 3, size, size, generator=g).to(device=device, dtype=dtype)
        generate(model, ids, pixels, 2)  # warm-up: kernels, library handles, bitsandbytes states
        memory = prefill_memory(model, ids, pixels)
        ttft = median_seconds(lambda: generate(model, ids, pixels, 1), settings.ttft_reps, device)
        full = median_seconds(lambda: generate(model, ids, pixels, 1 + settings.new_tokens),
                              settings.decode_reps, device)
    tokens = schedule.llm_tokens_per_layer(arch.llm.layers, settings.text_tokens)
    kv_element_bytes = torch.finfo(dtype).bits / 8
    step = max(full - ttft, 1e-9) / settings.new_tokens
    formula = settings.batch * kv_bytes(arch.llm, tokens, kv_element_bytes)
    return {"method": method, "vision_keep": schedule.vision_keep, "llm_visual_keep": schedule.llm_visual_keep,
            "llm_tokens_per_layer": tokens, **memory, "kv_formula_bytes": formula,
            "kv_equals_formula": memory["kv_bytes"] == formula,
            "ttft_ms": round(ttft * 1e3, 2), "decode_ms_per_token": round(step * 1e3, 2),
            "decode_tokens_per_s": round(settings.batch / step, 1)}


def measure_quant(make_model, arch: Arch, quant: str, methods_schedules, settings: MeasureSettings) -> list[dict]:
    """Build a model with `make_model()`, quantize it to `quant`, measure every (method, schedule).

    Each row gets `quant`, `weights_allocated_bytes` and `quantized_layers`.
    """
    from ficoco_edge.profile.gpu import quantize

    model = make_model()
    device = next(model.parameters()).device
    replaced = quantize(model, quant)
    weights = settle(device)
    rows = []
    try:
        for method, schedule in methods_schedules:
            row = measure_method(model, arch, method, schedule, settings)
            rows.append({"quant": quant, "weights_allocated_bytes": weights or None,
                         "quantized_layers": replaced, **row})
    finally:
        del model
        settle(device)
    return rows
