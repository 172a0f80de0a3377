"""Prefill and decode-step time of two exports' graphs of one schedule, alternating in one process
on this machine's CPU: what a change to the exported graphs (another quantization form, a rewrite)
does to a prefill, without the rest of a benchmark row around it.

    python benchmarks/prefill_graphs.py BEFORE_DIR AFTER_DIR [BEFORE_DIR AFTER_DIR ...] [--rounds 12]

For each pair: its prefill.onnx on the export's own prompt length (31 text tokens + its visual
tokens, random inputs), 3 runs per turn, and its decode.onnx (one step after that prompt), 10 steps
per turn, the two exports taking turns in alternating order. Prints medians and the speed-up.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from cpu_modes import prefill_feeds
from decode_graphs import decode_feeds, open_graph

PREFILLS_PER_TURN, STEPS_PER_TURN = 3, 10


def timed(session, feeds: dict, runs: int) -> list[float]:
    """ms of each of `runs` runs."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(None, feeds)
        times.append((time.perf_counter() - start) * 1e3)
    return times


def compare(before: Path, after: Path, rounds: int) -> str:
    """One table row: tokens, prefill and decode medians of both exports, prefill speed-up."""
    graphs = {}
    for name, export in (("before", before), ("after", after)):
        prefill, decode = open_graph(export, "prefill.onnx"), open_graph(export)
        graphs[name] = (prefill, prefill_feeds(export, prefill), decode, decode_feeds(export, decode))
    prefill_ms = {name: [] for name in graphs}
    decode_ms = {name: [] for name in graphs}
    for prefill, prefill_inputs, decode, decode_inputs in graphs.values():  # warm-up
        prefill.run(None, prefill_inputs)
        decode.run(None, decode_inputs)
    for turn in range(rounds):
        for name in ("before", "after") if turn % 2 else ("after", "before"):
            prefill, prefill_inputs, decode, decode_inputs = graphs[name]
            prefill_ms[name] += timed(prefill, prefill_inputs, PREFILLS_PER_TURN)
            decode_ms[name] += timed(decode, decode_inputs, STEPS_PER_TURN)
    p = {name: statistics.median(v) for name, v in prefill_ms.items()}
    d = {name: statistics.median(v) for name, v in decode_ms.items()}
    tokens = graphs["before"][1]["inputs_embeds"].shape[1]
    return (f"{tokens:>6} {p['before']:>10.2f} {p['after']:>9.2f} {p['before'] / p['after']:>8.2f}x "
            f"{d['before']:>10.3f} {d['after']:>9.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("exports", nargs="+", type=Path, help="pairs: before after [before after ...]")
    parser.add_argument("--rounds", type=int, default=12)
    args = parser.parse_args()
    if len(args.exports) % 2:
        parser.error("give the exports in pairs: BEFORE AFTER")
    print(f"{'tokens':>6} {'prefill ms':>10} {'(after)':>9} {'speed-up':>9} {'decode ms':>10} {'(after)':>9}")
    for before, after in zip(args.exports[::2], args.exports[1::2]):
        print(compare(before, after, args.rounds), flush=True)


if __name__ == "__main__":
    main()
