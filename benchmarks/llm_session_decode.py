"""Decode speed through the combined LLM graph (llm.onnx, prefill and decode as the branches of an If)
against the two LLM graphs as separate sessions: both backends of one export in one process, answers
alternating in a shuffled order, so that drift on a noisy machine falls on both alike.

    python benchmarks/llm_session_decode.py EXPORT_DIR [--device cpu|cuda] [--tokens 32] [--rounds 20]
                                            [--first one|two] [--seed 0]

Prints one row per mode: median ms per decode step with its interquartile range, decode tokens/s,
prefill ms (medians over `rounds` answers of `tokens` tokens, after one warm-up answer each), and
whether both modes gave the same tokens. --first chooses which backend is loaded (allocates its
weights) first: on the CPU that placement alone moved decode by a few percent (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import random
import statistics

from ficoco_edge.runtime import Runtime

IMAGE, QUESTION = "examples/red-triangle.png", "What color is the shape?"
MODES = {"one": "one session (llm.onnx)", "two": "two sessions"}


def quartiles(values: list[float]) -> tuple[float, float, float]:
    """(25th percentile, median, 75th percentile) of `values`."""
    low, median, high = statistics.quantiles(values, n=4, method="inclusive")
    return low, median, high


def load(export: str, device: str, first: str) -> dict[str, Runtime]:
    order = [first, "two" if first == "one" else "one"]
    return {mode: Runtime.load(export, device=device, one_llm_session=mode == "one") for mode in order}


def measure(runtimes: dict[str, Runtime], tokens: int, rounds: int, seed: int) -> dict[str, dict]:
    """Per mode: ms per decode step and prefill ms of every answer, and the last answer's tokens."""
    shuffle = random.Random(seed).shuffle
    results = {mode: {"step_ms": [], "prefill_ms": [], "tokens": None} for mode in runtimes}
    for runtime in runtimes.values():
        runtime.answer(IMAGE, QUESTION, tokens + 1, ignore_stop=True)  # warm-up: arenas, pre-packing
    for _ in range(rounds):
        order = list(runtimes)
        shuffle(order)
        for mode in order:
            answer = runtimes[mode].answer(IMAGE, QUESTION, tokens + 1, ignore_stop=True)
            results[mode]["step_ms"].append(1e3 / answer.timings.decode_tok_s)
            results[mode]["prefill_ms"].append(answer.timings.prefill_ms)
            results[mode]["tokens"] = answer.token_ids
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--tokens", type=int, default=32, help="decode steps per answer")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--first", default="one", choices=list(MODES), help="which backend allocates first")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    runtimes = load(args.export, args.device, args.first)
    results = measure(runtimes, args.tokens, args.rounds, args.seed)
    same = results["one"]["tokens"] == results["two"]["tokens"]
    print(f"{'mode':>22} {'loaded':>6} {'ms/step':>8} {'IQR':>13} {'decode tok/s':>12} {'prefill ms':>10} {'same':>5}")
    for position, mode in enumerate(runtimes):
        low, median, high = quartiles(results[mode]["step_ms"])
        prefill = statistics.median(results[mode]["prefill_ms"])
        print(f"{MODES[mode]:>22} {'first' if position == 0 else 'second':>6} {median:8.2f} {low:6.2f}-{high:6.2f} "
              f"{1e3 / median:12.1f} {prefill:10.2f} {'yes' if same else 'NO':>5}")


if __name__ == "__main__":
    main()
