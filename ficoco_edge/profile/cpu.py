"""Measured mode on the CPU: the onnxruntime exports of the embedded model, one fresh process per
configuration (`ficoco-edge bench`'s worker), so peak RSS and latency belong to that engine alone."""

from __future__ import annotations

import os

from ficoco_edge.errors import UsageError

CPU_QUANTS = ("fp32", "fp16", "int8", "int4")


def cpu_measured_rows(setting) -> tuple[dict, list[dict]]:
    """(environment, rows) for every quant x method of `setting` (a profile.tables.Setting)."""
    import onnxruntime

    from ficoco_edge.benchmark import BenchJob, BenchSettings, measure

    if setting.arch.name != "embedded":
        raise UsageError("measured mode on the CPU runs onnxruntime exports of the embedded model: use --model "
                         "embedded, or --gpu cuda on a GPU machine for the real-size architectures")
    if setting.keep is not None:
        raise UsageError("measured mode on the CPU takes --budget, not --keep")
    if (setting.batch, setting.text_tokens, setting.context, setting.kv_bits) != (1, 60, None, 16):
        raise UsageError("measured mode on the CPU answers the benchmark's prompt at batch 1 with the exports' "
                         "KV cache: drop --batch, --text-tokens, --context and --kv-bits")
    bad = [q for q in setting.quants if q not in CPU_QUANTS]
    if bad:
        raise UsageError(f"CPU exports are {', '.join(CPU_QUANTS)}; got --quant {','.join(bad)}")
    rows = []
    for quant in setting.quants:
        for method in setting.methods:
            budget = None if method == "none" else setting.budget
            row = measure(BenchJob(budget, quant), BenchSettings(model="embedded", method=method))
            prompt = row["text_tokens"]
            rows.append({"method": method, "quant": quant, "llm_tokens_per_layer": row["visual_tokens"],
                         "kv_bytes": row["kv_bytes"], "peak_rss_bytes": int(row["peak_rss_mb"] * 2**20),
                         "vision_ms": round(row["vision_ms"], 1), "prefill_ms": round(row["prefill_ms"], 1),
                         "ttft_ms": round(row["ttft_ms"], 1), "decode_tokens_per_s": round(row["decode_tok_s"], 1)})
    return {"backend": "onnxruntime CPU", "onnxruntime": onnxruntime.__version__, "cpus": os.cpu_count(),
            "prompt_text_tokens": prompt}, rows
