"""onnxruntime-gpu: prefill and decode as one session (the export's llm.onnx) against two sessions,
same export, each in a fresh process (GPU memory is the device's, so one process at a time).

    python benchmarks/ort_gpu_llm_session.py --budgets none,1.5 --quant fp32,int4 --tokens 64 --repeats 5

prints one row per export and mode: GPU memory in use after loading and after the answers
(cudaMemGetInfo, minus what was in use before onnxruntime started), TTFT, prefill, decode tokens/s
(medians), and whether both modes gave the same tokens. Needs a GPU, onnxruntime-gpu and cuda-python.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

IMAGE, QUESTION = "examples/red-triangle.png", "What color is the shape?"
MODES = {"one session": True, "two sessions": False}


def gpu_used_mb(cudart) -> float:
    err, free, total = cudart.cudaMemGetInfo()
    return (total - free) / 2**20


def worker(directory: str, one_llm_session: bool, tokens: int, repeats: int) -> dict:
    """Load the export on the GPU in this process; memory and speed as JSON."""
    from ficoco_edge.runtime import Runtime
    from ficoco_edge.runtime.cuda import import_cudart

    cudart = import_cudart()

    cudart.cudaFree(0)  # the CUDA context first: its memory is not the sessions'
    before = gpu_used_mb(cudart)
    runtime = Runtime.load(directory, device="cuda", one_llm_session=one_llm_session)
    loaded = gpu_used_mb(cudart) - before
    runtime.answer(IMAGE, QUESTION, tokens + 1, ignore_stop=True)  # warm-up: arenas, cuBLAS handles
    results = [runtime.answer(IMAGE, QUESTION, tokens + 1, ignore_stop=True) for _ in range(repeats)]
    median = lambda key: statistics.median(getattr(r.timings, key) for r in results)  # noqa: E731
    return {"sessions": sorted(runtime.backend.sessions), "backend": runtime.backend.name,
            "kv": runtime.backend.kv_location, "loaded_mb": loaded, "answered_mb": gpu_used_mb(cudart) - before,
            "ttft_ms": median("ttft_ms"), "prefill_ms": median("prefill_ms"),
            "decode_tok_s": median("decode_tok_s"), "tokens": results[0].token_ids}


def main() -> None:
    from ort_gpu_kv import export_parser, exports  # this folder's: the same options and exports

    parser = export_parser(__doc__.splitlines()[0])
    parser.add_argument("--worker", nargs=2, metavar=("DIR", "ONE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker[0], args.worker[1] == "1", args.tokens, args.repeats)))
        return
    print(f"{'method':>10} {'budget':>6} {'quant':>5} {'mode':>13} {'sessions':>22} {'GPU MB load':>11} "
          f"{'GPU MB run':>10} {'TTFT ms':>8} {'prefill ms':>10} {'decode tok/s':>12} {'same':>5}")
    for method, budget, quant, directory in exports(args):
        rows = {}
        for mode, one in MODES.items():
            command = [sys.executable, __file__, "--worker", str(directory), "1" if one else "0",
                       "--tokens", str(args.tokens), "--repeats", str(args.repeats)]
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode:
                sys.exit(f"{directory} ({mode}) failed:\n{done.stderr[-2000:]}")
            rows[mode] = json.loads(done.stdout)
        same = rows["one session"]["tokens"] == rows["two sessions"]["tokens"]
        for mode, r in rows.items():
            print(f"{method:>10} {budget or 'none':>6} {quant:>5} {mode:>13} {'+'.join(r['sessions']):>22} "
                  f"{r['loaded_mb']:11.0f} {r['answered_mb']:10.0f} {r['ttft_ms']:8.1f} {r['prefill_ms']:10.1f} "
                  f"{r['decode_tok_s']:12.1f} {'yes' if same else 'NO':>5}", flush=True)


if __name__ == "__main__":
    main()
