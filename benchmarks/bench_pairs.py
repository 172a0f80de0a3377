"""Two exports measured as back-to-back fresh processes, many rounds: how much of a ratio between two
bench rows is the software and how much is when each row ran (this VM's speed levels).

    python benchmarks/bench_pairs.py UNREDUCED_EXPORT REDUCED_EXPORT [--rounds 24] [--draws 2000]

Each round runs `ficoco_edge.bench_worker` once per export (2 timed answers of 16 decode tokens, as
`bench_runtime.sh`), the two in a shuffled order. Prints one line per round (decode tok/s of each
answer, the pair's decode ratio reduced / unreduced, its prefill speed-up over the plan FLOPs ratio),
then the ratios the bench would report from all rounds and their spread over random draws of 5
rounds (the bench's `--rounds 5`): pooled medians, pooled means, and the median of per-round ratios,
with the share of draws that meet the runtime targets (decode >= 1x, prefill >= 0.9 of the FLOPs ratio).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys

FLOPS_RATIO = 8.11  # plan --model embedded: unreduced / FiCoCo-V 1.5 LLM TFLOPs, 31 text tokens
QUESTION, IMAGE = "What color is the shape?", "examples/red-triangle.png"


def measure(export: str) -> dict:
    job = {"backend": "ort", "export": export, "image": IMAGE, "question": QUESTION, "decode_tokens": 16,
           "repeats": 2, "device": "cpu"}
    done = subprocess.run([sys.executable, "-m", "ficoco_edge.bench_worker", json.dumps(job)],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])["samples"]


def ratios(rounds: list[dict]) -> tuple[float, float, float, float]:
    """(decode ratio of pooled medians, of pooled means, median per-round ratio, prefill ratio / FLOPs)."""
    pooled = lambda name, key: [v for r in rounds for v in r[name][key]]  # noqa: E731
    decode = [pooled(n, "decode_tok_s") for n in ("reduced", "full")]
    per_round = [statistics.mean(r["reduced"]["decode_tok_s"]) / statistics.mean(r["full"]["decode_tok_s"])
                 for r in rounds]
    prefill = statistics.median(pooled("full", "prefill_ms")) / statistics.median(pooled("reduced", "prefill_ms"))
    return (statistics.median(decode[0]) / statistics.median(decode[1]),
            statistics.mean(decode[0]) / statistics.mean(decode[1]), statistics.median(per_round), prefill / FLOPS_RATIO)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("full"), parser.add_argument("reduced")
    parser.add_argument("--rounds", type=int, default=24)
    parser.add_argument("--draws", type=int, default=2000)
    args = parser.parse_args()
    rounds = []
    print(f"{'round':>5} {'full tok/s':>14} {'reduced tok/s':>14} {'decode':>7} {'prefill/flops':>13}")
    for index in range(args.rounds):
        names = ["full", "reduced"]
        random.Random(index).shuffle(names)
        rounds.append({name: measure(getattr(args, name)) for name in names})
        r = rounds[-1]
        speeds = ["/".join(f"{v:.0f}" for v in r[n]["decode_tok_s"]) for n in ("full", "reduced")]
        print(f"{index:>5} {speeds[0]:>14} {speeds[1]:>14} {ratios([r])[2]:>7.3f} {ratios([r])[3]:>13.3f}", flush=True)
    print("\nstatistic                     all rounds   5-round draws p5 / p50 / p95   draws meeting target")
    draws = [ratios(random.Random(d).sample(rounds, min(5, len(rounds)))) for d in range(args.draws)]
    names = ("decode, pooled medians", "decode, pooled means", "decode, per-round median", "prefill / FLOPs ratio")
    for column, (name, target) in enumerate(zip(names, (1, 1, 1, 0.9))):
        values = sorted(d[column] for d in draws)
        spread = " / ".join(f"{values[int(q * (len(values) - 1))]:.3f}" for q in (0.05, 0.5, 0.95))
        share = sum(v >= target for v in values) / len(values)
        print(f"{name:<28} {ratios(rounds)[column]:>12.3f}   {spread:>30}   {share:>9.2f} (>= {target:g})")


if __name__ == "__main__":
    main()
