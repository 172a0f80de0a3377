"""Watch this machine's speed over time with one export's fp32 graphs: every interval, the decode
step and the prefill of the export's own prompt length, both measured back to back in one process.

    python benchmarks/cpu_modes.py EXPORT_DIR [--unreduced EXPORT_DIR] [--intervals 12] [--steps 20] [--prefills 8]

On a VM whose host moves its virtual CPUs, the pair shifts between levels that last minutes and
outlive processes; when the two move in opposite directions, no one process's rows can say which
level a benchmark row was measured in. Prints one line per interval: ms per decode step and ms per
prefill (medians); with --unreduced, also that export's prefill (3 runs) and the prefill speed-up.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

from decode_graphs import TEXT_TOKENS, decode_feeds, open_graph


def median_ms(session, feeds: dict, runs: int) -> float:
    """Median ms of `runs` runs after one untimed run."""
    session.run(None, feeds)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(None, feeds)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def prefill_feeds(export: Path, session) -> dict[str, np.ndarray]:
    """inputs_embeds (1, TEXT_TOKENS + the export's visual tokens, hidden), random; and the image
    span's start for graphs that reduce inside the LLM (any start that fits the span times the same)."""
    manifest = json.loads((export / "manifest.json").read_text())
    tokens = TEXT_TOKENS + manifest["visual_tokens"]
    embeds = np.random.default_rng(0).standard_normal((1, tokens, manifest["llm"]["hidden"]), np.float32) * 0.5
    feeds = {"inputs_embeds": embeds, "image_start": np.array(1, np.int64)}
    return {i.name: feeds[i.name] for i in session.get_inputs()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export", type=Path)
    parser.add_argument("--unreduced", type=Path, help="an export of the same model without reduction")
    parser.add_argument("--intervals", type=int, default=12)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--prefills", type=int, default=8)
    args = parser.parse_args()
    decode = open_graph(args.export)
    prefill = open_graph(args.export, "prefill.onnx")
    step_inputs, prompt = decode_feeds(args.export, decode), prefill_feeds(args.export, prefill)
    long = None
    if args.unreduced:
        unreduced_prefill = open_graph(args.unreduced, "prefill.onnx")
        long = unreduced_prefill, prefill_feeds(args.unreduced, unreduced_prefill)
    tokens = f"{prompt['inputs_embeds'].shape[1]}" + (f" / {long[1]['inputs_embeds'].shape[1]}" if long else "")
    print(f"{'interval':>8} {'decode ms':>10} {'prefill ms':>11} {'unreduced ms':>13} {'speed-up':>9}   ({tokens} tokens)")
    for interval in range(args.intervals):
        step, short = median_ms(decode, step_inputs, args.steps), median_ms(prefill, prompt, args.prefills)
        unreduced = median_ms(*long, 3) if long else float("nan")
        print(f"{interval:>8} {step:>10.2f} {short:>11.1f} {unreduced:>13.1f} {unreduced / short:>9.2f}", flush=True)


if __name__ == "__main__":
    main()
