"""The LLM as one onnxruntime session (llm.onnx, export/combine.py) against prefill and decode in
their own sessions, same export: memory each keeps, and speed.

    python benchmarks/llm_session_memory.py EXPORT [EXPORT ...] [--answers 6]

Memory: each mode in a fresh process that loads the runtime and answers once; RssAnon (anonymous
memory: pre-packed weights, arenas), VmRSS and VmHWM (peak, including the weight file's pages that
onnxruntime maps while it pre-packs), in MiB. Speed: both modes loaded in one process, answers
alternating; medians of the prefill (ms) and of decode (tokens/s, 16 tokens after the first).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

IMAGE, QUESTION = "examples/red-triangle.png", "What color is the shape?"

CHILD = """
import json, sys
from ficoco_edge.bench_worker import _status_mb
from ficoco_edge.runtime import Runtime
runtime = Runtime.load(sys.argv[1], device="cpu", verify=False, one_llm_session=sys.argv[2] == "one session")
runtime.answer(sys.argv[3], sys.argv[4], 4)
print(json.dumps({k: _status_mb(k) for k in ("RssAnon", "VmRSS", "VmHWM")}))
"""


def memory(export: str, mode: str) -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD, export, mode, IMAGE, QUESTION], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(done.stderr.strip().splitlines()[-1])
    return json.loads(done.stdout.splitlines()[-1])


def speeds(export: str, answers: int) -> dict[str, tuple[float, float]]:
    """mode -> (median prefill ms, median decode tok/s), the two modes' answers alternating."""
    from ficoco_edge.runtime import Runtime

    runtimes = {mode: Runtime.load(export, device="cpu", verify=False, one_llm_session=mode == "one session")
                for mode in ("one session", "two sessions")}
    timings = {mode: [] for mode in runtimes}
    for _ in range(answers + 1):
        for mode, runtime in runtimes.items():
            timings[mode].append(runtime.answer(IMAGE, QUESTION, 17, ignore_stop=True).timings)
    return {mode: (statistics.median(t.prefill_ms for t in ts[1:]), statistics.median(t.decode_tok_s for t in ts[1:]))
            for mode, ts in timings.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("exports", nargs="+")
    parser.add_argument("--answers", type=int, default=6)
    args = parser.parse_args()
    print(f"{'export':>32} {'mode':>13} {'RssAnon':>8} {'VmRSS':>7} {'VmHWM':>7} {'prefill ms':>10} {'decode tok/s':>12}")
    for export in args.exports:
        timed = speeds(export, args.answers)
        for mode in ("two sessions", "one session"):
            mem = memory(export, mode)
            print(f"{export.rstrip('/').split('/')[-1]:>32} {mode:>13} {mem['RssAnon']:8.0f} {mem['VmRSS']:7.0f} "
                  f"{mem['VmHWM']:7.0f} {timed[mode][0]:10.1f} {timed[mode][1]:12.1f}")


if __name__ == "__main__":
    main()
