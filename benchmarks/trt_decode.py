"""TensorRT backend host overhead: the same engines answered with decode steps replayed as CUDA
graphs, and enqueued every step, in one process.

    python benchmarks/trt_decode.py EXPORT_DIR [--tokens 32] [--repeats 10] [--label NAME]

Prints one row per variant: median TTFT, prefill ms, decode tokens/s and ms per decode step over
`repeats` answers of exactly `tokens` tokens (after two warm-up answers), and whether the variants'
tokens agree. A checkout whose backend has no CUDA graph replay prints its single variant (label it
with --label to compare runs of two checkouts on one machine).
"""

from __future__ import annotations

import argparse
import statistics

from ficoco_edge.runtime import Runtime

IMAGE, QUESTION = "examples/red-triangle.png", "What color is the shape?"


def measure(runtime: Runtime, tokens: int, repeats: int) -> tuple[dict[str, float], list[int]]:
    for _ in range(2):
        runtime.answer(IMAGE, QUESTION, tokens, ignore_stop=True)
    answers = [runtime.answer(IMAGE, QUESTION, tokens, ignore_stop=True) for _ in range(repeats)]
    times = {key: statistics.median(getattr(a.timings, key) for a in answers) for key in ("ttft_ms", "prefill_ms", "decode_tok_s")}
    return times, answers[-1].token_ids


def variants(runtime: Runtime):
    """(name, switch) pairs; switch() puts the backend into that variant."""
    runner = getattr(runtime.backend, "runners", {}).get("decode")
    if runner is None:
        return [("enqueue (no reuse)", lambda: None)]
    replay = runner.replay
    return [("cuda graphs", lambda: setattr(runner, "replay", replay)), ("enqueue", lambda: setattr(runner, "replay", None))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export")
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--label", default="this checkout")
    args = parser.parse_args()
    runtime = Runtime.load(args.export, backend="trt")
    print(f"{'checkout':>16} {'decode steps':>20} {'TTFT ms':>8} {'prefill ms':>10} {'decode tok/s':>12} {'ms/step':>8} same")
    first = None
    for name, switch in variants(runtime):
        switch()
        times, tokens = measure(runtime, args.tokens, args.repeats)
        first = first or tokens
        print(f"{args.label:>16} {name:>20} {times['ttft_ms']:8.2f} {times['prefill_ms']:10.2f} "
              f"{times['decode_tok_s']:12.1f} {1e3 / times['decode_tok_s']:8.2f} {tokens == first}", flush=True)


if __name__ == "__main__":
    main()
