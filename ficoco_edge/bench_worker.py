"""One benchmark measurement in its own process, so peak RSS belongs to that configuration alone.

    python -m ficoco_edge.bench_worker '{"backend": "ort", "export": DIR, "image": ..., ...}'

prints one JSON object: ttft_ms, vision_ms, prefill_ms (medians over `repeats`), decode_tok_s
(exactly `decode_tokens` tokens after the first, stop tokens ignored), peak_rss_mb, rss_mb (resident
after the answers), kv_bytes, and `samples`: every timed value, which `ficoco-edge bench --rounds`
pools across processes.
The onnxruntime worker imports no torch; the "hf" worker runs transformers' generate on the
unreduced PyTorch model, which is what users run without this toolkit.
"""

from __future__ import annotations

import json
import resource
import statistics
import sys
import time
from pathlib import Path


def peak_rss_mb() -> float:
    """This process's peak resident set (MiB). VmHWM starts afresh at exec; ru_maxrss would carry
    over the parent's peak from before the fork. It includes the weight files' pages, which
    onnxruntime maps while it pre-packs the weights at load (file-backed: the kernel can drop them)."""
    peak = _status_mb("VmHWM")
    if peak is not None:
        return peak
    # Without /proc (macOS, BSD): ru_maxrss counts bytes on macOS, KiB elsewhere.
    per_mib = 1024 * 1024 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / per_mib


def rss_mb() -> float | None:
    """This process's resident set now (MiB; None without /proc): taken after the answers, with the
    model still loaded."""
    return _status_mb("VmRSS")


def _status_mb(key: str) -> float | None:
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith(f"{key}:"):
                return int(line.split()[1]) / 1024
    return None


SAMPLED = ("ttft_ms", "vision_ms", "prefill_ms", "decode_tok_s")


def medians(samples: dict[str, list[float]]) -> dict[str, float]:
    return {key: statistics.median(values) for key, values in samples.items()}


def measure_ort(job: dict) -> dict:
    from ficoco_edge.runtime import Runtime

    runtime = Runtime.load(job["export"], device=job.get("device", "cpu"), threads=job.get("threads"), verify=False)
    run = lambda: runtime.answer(job["image"], job["question"], job["decode_tokens"] + 1, ignore_stop=True)  # noqa: E731
    run()  # warm-up: first calls allocate arenas
    results = [run() for _ in range(job["repeats"])]
    samples = {key: [getattr(r.timings, key) for r in results] for key in SAMPLED}
    text_tokens = len(runtime.prompt_ids(job["question"])) - runtime.manifest["visual_tokens"]
    return {**medians(samples), "samples": samples, "kv_bytes": results[0].kv_bytes, "rss_mb": rss_mb(), "text_tokens": text_tokens,
            "device": "cpu" if runtime.backend.providers[0] == "CPUExecutionProvider" else "cuda",
            "kv_location": runtime.backend.kv_location}


def measure_hf(job: dict) -> dict:
    """transformers' generate, eager PyTorch (no compile), fp32, default attention, unreduced."""
    import torch

    from ficoco_edge.models.hf_compat import output_cache
    from ficoco_edge.models.loading import load
    from ficoco_edge.runtime.images import open_image

    if job.get("threads"):
        torch.set_num_threads(job["threads"])
    device = "cuda" if job.get("device", "cpu") != "cpu" and torch.cuda.is_available() else "cpu"
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    vlm = load(job["model"], device)
    ids, mask = (t.to(device) for t in vlm.prompt_batch([job["question"]]))

    def generate(new_tokens: int) -> tuple[float, float, object]:
        start = time.perf_counter()
        pixels = vlm.pixels([open_image(job["image"])]).to(device)
        with torch.inference_mode():
            tick = time.perf_counter()
            vlm.model.get_image_features(pixel_values=pixels)
            sync()
            vision = time.perf_counter() - tick
            out = vlm.model.generate(input_ids=ids, attention_mask=mask, pixel_values=pixels, do_sample=False,
                                     max_new_tokens=new_tokens, min_new_tokens=new_tokens, pad_token_id=vlm.prompt.pad_id,
                                     return_dict_in_generate=True)
            sync()
        return time.perf_counter() - start - vision, vision, out

    generate(1)
    firsts = [generate(1) for _ in range(job["repeats"])]
    total, _, out = generate(job["decode_tokens"] + 1)
    ttft = statistics.median(f[0] for f in firsts)
    cache = output_cache(out)
    kv = sum(t.numel() * t.element_size() for layer in cache.layers for t in (layer.keys, layer.values))
    samples = {"ttft_ms": [f[0] * 1e3 for f in firsts], "vision_ms": [f[1] * 1e3 for f in firsts],
               "prefill_ms": [(f[0] - f[1]) * 1e3 for f in firsts], "decode_tok_s": [job["decode_tokens"] / (total - ttft)]}
    return {**medians(samples), "samples": samples, "kv_bytes": kv, "rss_mb": rss_mb(),
            "text_tokens": int(mask.sum() - (ids == vlm.prompt.image_token_id).sum()), "device": device}


def main() -> None:
    job = json.loads(sys.argv[1])
    row = measure_hf(job) if job["backend"] == "hf" else measure_ort(job)
    row["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(row))


if __name__ == "__main__":
    main()
