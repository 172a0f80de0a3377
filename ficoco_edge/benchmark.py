"""`ficoco-edge bench`: time to first token, stage times, decode speed, peak RSS and KV bytes of the
runtime at several budgets and quantizations, plus transformers' own generate as the baseline.

Each configuration runs in a fresh process (`ficoco_edge.bench_worker`) so its peak RSS is its own;
with `--rounds N` every configuration is measured N times, interleaved, and the samples pooled.
Exports come from the cache (`ficoco-edge run`'s), made on first use.
"""

from __future__ import annotations

import json
import random
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ficoco_edge.errors import UsageError
from ficoco_edge.paths import example_image

FIELDS = ("method", "budget_tflops", "quant", "backend", "device", "visual_tokens", "ttft_ms", "vision_ms", "prefill_ms",
          "decode_tok_s", "peak_rss_mb", "rss_mb", "kv_bytes", "kv_location", "plan_tflops", "plan_llm_tflops")


@dataclass(frozen=True)
class BenchJob:
    """One row: budget None is the unreduced model; backend "hf" is transformers' generate."""

    budget: float | None
    quant: str
    backend: str = "ort"


@dataclass(frozen=True)
class BenchSettings:
    model: str = "embedded"
    method: str = "ficoco-v"
    image: str = field(default_factory=lambda: str(example_image()))
    question: str = "What color is the shape?"
    decode_tokens: int = 16
    repeats: int = 3
    rounds: int = 1  # every job measured once per round, in turn (run_bench)
    threads: int | None = None
    device: str = "auto"  # auto | cpu | cuda, for onnxruntime and the transformers row alike


def parse_budgets(text: str) -> list[float | None]:
    """'none,4.2,1.5' -> [None, 4.2, 1.5]."""
    budgets = []
    for item in (t.strip() for t in text.split(",") if t.strip()):
        try:
            budgets.append(None if item == "none" else float(item))
        except ValueError:
            raise UsageError(f"budget {item!r} is not a number or 'none'") from None
    if not budgets:
        raise UsageError("--budgets needs at least one of: none, or a TFLOPs number")
    return budgets


def run_bench(jobs: list[BenchJob], settings: BenchSettings, on_row=None) -> list[dict]:
    """Measure every job in its own process, all jobs once per round, `settings.rounds` rounds: on a
    machine whose speed drifts over minutes every row then samples the same stretches of time, so
    ratios between rows are not skewed by when each ran. on_row(row, round) sees each measurement."""
    if not Path(settings.image).is_file():
        raise UsageError(f"image {settings.image} not found")
    measured = [[] for _ in jobs]
    for round_ in range(settings.rounds):
        for index in round_order(jobs, round_):
            measured[index].append(measure(jobs[index], settings))
            if on_row is not None:
                on_row(measured[index][-1], round_)
    return [pool(rows) for rows in measured]


def round_order(jobs: list[BenchJob], round_: int) -> list[int]:
    """Indices of `jobs` in the order round `round_` measures them. The jobs of one engine (backend and
    quant) run one after another, because the targets compare an engine's budgets with each other:
    this VM switches between two speed levels every few seconds to a minute (docs/benchmarks.md), and
    rows a whole round apart would often catch different levels. Round 0 keeps the given order; later
    rounds shuffle the engines and the jobs within each (seeded by the round), so that no job always
    follows the same other job's process."""
    engines: dict[tuple[str, str], list[int]] = {}
    for index, job in enumerate(jobs):
        engines.setdefault((job.backend, job.quant), []).append(index)
    groups = list(engines.values())
    if round_:
        shuffle = random.Random(round_).shuffle
        shuffle(groups)
        for group in groups:
            shuffle(group)
    return [index for group in groups for index in group]


def pool(rows: list[dict]) -> dict:
    """One row from a job's rounds: medians over every round's samples, the largest RSS figures."""
    from ficoco_edge.bench_worker import SAMPLED

    pooled = {k: v for k, v in rows[0].items() if k != "samples"}
    for key in SAMPLED:
        pooled[key] = statistics.median(v for row in rows for v in row["samples"][key])
    pooled["peak_rss_mb"] = max(row["peak_rss_mb"] for row in rows)
    resident = [row["rss_mb"] for row in rows if row.get("rss_mb") is not None]
    pooled["rss_mb"] = max(resident) if resident else None
    pooled["rounds"] = len(rows)
    return pooled


def measure(job: BenchJob, settings: BenchSettings) -> dict:
    from ficoco_edge.export.cli import cached_export
    from ficoco_edge.plan import make_plan

    method = settings.method if job.budget is not None else "none"
    spec = {"backend": job.backend, "image": settings.image, "question": settings.question, "model": settings.model,
            "decode_tokens": settings.decode_tokens, "repeats": settings.repeats, "threads": settings.threads, "device": settings.device}
    if job.backend == "ort":
        spec["export"] = str(cached_export(settings.model, method, job.budget, None, job.quant))
    done = subprocess.run([sys.executable, "-m", "ficoco_edge.bench_worker", json.dumps(spec)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"benchmark worker failed for {job}: {done.stderr.strip().splitlines()[-1:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    plan = make_plan(settings.model, method, job.budget, text_tokens=result["text_tokens"])
    return {"method": method, "budget_tflops": job.budget, "quant": job.quant, "backend": job.backend,
            "visual_tokens": plan["visual_tokens_out"], **{k: result[k] for k in (*FIELDS, "samples") if k in result},
            "plan_tflops": plan["tflops"], "plan_llm_tflops": plan["physical"]["llm_tflops"],
            "text_tokens": result["text_tokens"]}


def table(rows: list[dict]) -> str:
    """A fixed-width table of the rows."""
    head = ("method", "budget", "quant", "backend", "vis.tok", "TTFT ms", "vision ms", "prefill ms", "decode tok/s",
            "peak RSS MB", "RSS MB", "KV MB")
    lines = ["  ".join(f"{h:>12}" for h in head)]
    for r in rows:
        cells = (r["method"], "none" if r["budget_tflops"] is None else f"{r['budget_tflops']:g}", r["quant"],
                 "/".join(filter(None, (r["backend"], r.get("device")))), r["visual_tokens"], f"{r['ttft_ms']:.1f}", f"{r['vision_ms']:.1f}",
                 f"{r['prefill_ms']:.1f}", f"{r['decode_tok_s']:.1f}", f"{r['peak_rss_mb']:.0f}",
                 "-" if r.get("rss_mb") is None else f"{r['rss_mb']:.0f}", f"{r['kv_bytes'] / 1e6:.2f}")
        lines.append("  ".join(f"{c:>12}" for c in cells))
    return "\n".join(lines)
