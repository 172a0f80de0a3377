"""Render a profile report (the dict from `run.profile_report`) as markdown or JSON."""

from __future__ import annotations

import json
from pathlib import Path

from ficoco_edge.errors import UsageError
from ficoco_edge.outputs import atomic_output

FORMATS = ("md", "json")
COLUMNS = {
    "llmviewer": [("method", "method"), ("quant", "quant"), ("vision_keep", "vision out"),
                  ("llm_visual_keep", "LLM visual"), ("llm_tokens_first", "LLM tokens L0"),
                  ("llm_tokens_last", "LLM tokens last"), ("tflops", "TFLOPs"),
                  ("tflops_labelled", "TFLOPs (paper label)"), ("memory_access_gb", "memory access GB"),
                  ("kv_cache_mb", "KV MB"), ("resident_gb", "resident GB")],
    "physical": [("method", "method"), ("quant", "quant"), ("vision_keep", "vision out"),
                 ("llm_visual_keep", "LLM visual"), ("llm_tflops", "LLM TFLOPs"), ("vision_tflops", "vision TFLOPs"),
                 ("total_tflops", "total TFLOPs"), ("weights_gb", "weights GB"), ("kv_mb", "KV MB"),
                 ("activation_mb", "activations MB"), ("resident_gb", "resident GB")],
    "measured": [("method", "method"), ("quant", "quant"), ("llm_tokens_per_layer", "LLM tokens per layer"),
                 ("weights_allocated_bytes", "weights GB"), ("weights_predicted_bytes", "predicted GB"),
                 ("kv_bytes", "KV MB"), ("kv_formula_bytes", "formula MB"), ("kv_equals_formula", "equal"),
                 ("activation_peak_bytes", "activation peak MB"), ("activation_estimate_bytes", "estimate MB"),
                 ("peak_allocated_bytes", "peak GB"), ("peak_rss_bytes", "peak RSS MB"), ("vision_ms", "vision ms"),
                 ("prefill_ms", "prefill ms"), ("ttft_ms", "TTFT ms"), ("ttft_ceiling_ms", "ceiling ms"),
                 ("decode_tokens_per_s", "decode tok/s"), ("decode_ceiling_tokens_per_s", "ceiling tok/s")],
    "device": [("method", "method"), ("quant", "quant"), ("ttft_ms", "TTFT ceiling ms"), ("ttft_bound", "bound"),
               ("decode_tokens_per_s", "decode ceiling tok/s"), ("decode_bound", "bound"),
               ("footprint_gb", "needs GB"), ("usable_gb", "usable GB"), ("fits", "fits"),
               ("largest_batch", "max batch"), ("largest_context", "max context")],
}
BYTE_UNITS = {"GB": 1e9, "MB": 1e6}


def check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise UsageError(f"unknown format {fmt!r}; choose one of: {', '.join(FORMATS)}")


def from_json(path: str | Path) -> dict:
    """A report saved as JSON (to render it again, e.g. as markdown)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read report {path}: {exc}") from exc


def render(report: dict, fmt: str) -> str:
    """The report as 'md' (markdown tables and notes) or 'json' (indented)."""
    check_format(fmt)
    return json.dumps(report, indent=2) + "\n" if fmt == "json" else to_markdown(report)


def save(report: dict, prefix: str) -> list[Path]:
    """Write PREFIX.md and PREFIX.json; returns the paths."""
    paths = [Path(f"{prefix}.{fmt}") for fmt in FORMATS]
    for path, fmt in zip(paths, FORMATS):
        with atomic_output(path) as sink:
            sink.write(render(report, fmt))
    return paths


def to_markdown(report: dict) -> str:
    mode = report["mode"]
    lines = [f"# ficoco-edge profile: {report['model']}, {mode} mode", ""]
    if report.get("command"):
        lines += ["```", report["command"], "```", ""]
    lines += [_settings_line(report), ""]
    if report.get("environment"):
        lines += ["Environment: " + ", ".join(f"{k} {v}" for k, v in report["environment"].items()), ""]
    lines += table(report["rows"], COLUMNS[mode]) + [""]
    if "paper" in report:
        lines += paper_markdown(report["paper"], report["paper_source"])
    if "device" in report:
        lines += device_markdown(report["device"])
    lines += ["Notes:", ""] + [f"- {n}" for n in report["notes"]]
    return "\n".join(lines) + "\n"


def _settings_line(report: dict) -> str:
    budget = (f"budget {report['budget_tflops']} TFLOPs (LLaVA-1.5-7B LLM-Viewer ceiling)" if report["keep"] is None
              else f"keep {report['keep']} visual tokens")
    scheds = "; ".join(f"{m}: {s['vision_keep']} -> {s['llm_visual_keep']} visual"
                       for m, s in report["schedules"].items())
    kv = "KV as each export holds it" if report["kv_bits"] is None else f"KV {report['kv_bits']}-bit"
    return (f"{budget}, text tokens {report['text_tokens']}, context "
            f"{report['context']}, batch {report['batch']}, {kv}, K={report['llm_layer']}. "
            f"Schedules: {scheds}.")


def table(rows: list[dict], columns: list[tuple[str, str]]) -> list[str]:
    """Markdown table of `rows` with (key, header) columns; *_bytes keys shown in the header's unit."""
    present = [(k, h) for k, h in columns if any(k in r for r in rows)]
    out = ["| " + " | ".join(h for _, h in present) + " |", "|" + "---|" * len(present)]
    for r in rows:
        out.append("| " + " | ".join(_cell(r.get(k), k, h) for k, h in present) + " |")
    return out


def _cell(value, key: str, header: str) -> str:
    if value is None:
        return "-"
    if key.endswith("_bytes"):
        unit = next((u for u in BYTE_UNITS if u in header), "GB")
        return f"{value / BYTE_UNITS[unit]:.3f}" if unit == "GB" else f"{value / BYTE_UNITS[unit]:.1f}"
    if isinstance(value, bool):
        return "yes" if value else "**no**"
    return str(value)


def paper_markdown(rows: list[dict], source: str) -> list[str]:
    """The paper's cells next to ours, a verdict per cell, and the reasons as numbered notes."""
    if not rows:
        return ["The paper has no table for this model (Tables 8 and 9 cover llava-1.5-7b and llava-1.5-13b).", ""]
    lines = [f"## Paper comparison ({source})", "",
             "| table | method | quant | LLM tokens | TFLOPs paper / ours | memory GB paper / ours | "
             "KV MB paper / ours | resident GB |", "|---|---|---|---|---|---|---|---|"]
    reasons = []
    for r in rows:
        cells = []
        for key in ("tflops", "memory_gb", "kv_mb"):
            c = r["cells"][key]
            reasons.append(f"Table {r['table']} {r['method']} {r['quant']} {key}: **{c['verdict']}** - {c['reason']}")
            cells.append(f"{c['paper']} / {c['ours']:.4g} ({c['rel_diff']:+.1%}) {c['verdict']} [{len(reasons)}]")
        lines.append(f"| {r['table']} | {r['method']} | {r['quant']} | {r['tokens']} | " + " | ".join(cells)
                     + f" | {r['resident_gb']} |")
    lines += ["", "A cell matches when ours is within 1% of the paper's figure.", ""]
    lines += [f"{i}. {text}" for i, text in enumerate(reasons, 1)]
    notes = [f"- Table {r['table']} {r['method']} {r['quant']}: {r['tokens_note']}; counts "
             f"{r['tokens_matching_memory_kv']} reproduce its memory and KV cells" for r in rows if r["tokens_note"]]
    return lines + [""] + notes + ([""] if notes else [])


def device_markdown(section: dict) -> list[str]:
    p = section["profile"]
    live = section["live_memory"]
    memory = (f"jtop now: {live['total_bytes'] / 2**30:.2f} GiB total, {live['used_bytes'] / 2**30:.2f} GiB used"
              if live else f"{p['memory_gib']} GiB, {p['reserved_gib']} GiB reserved")
    lines = [f"## Device predictions: {p['name']}", "",
             f"{memory}; {p['bandwidth_gbs']} GB/s; {p['peak_fp16_tflops']} FP16 TFLOPS, {p['peak_int8_tops']} "
             f"INT8 TOPS (dense); unified memory: {'yes' if p['unified_memory'] else 'no'}. Source: {p['source']}", "",
             "Ceilings (roofline: max of ops / peak and bytes / bandwidth, every weight read once); 'needs' = "
             "weights + KV at the context + prefill activations; GB = 1e9 bytes; max context in text tokens "
             "per sequence.", ""]
    return lines + table(section["rows"], COLUMNS["device"]) + [""]
