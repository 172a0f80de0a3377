"""onnxruntime-gpu: the KV cache in host memory (numpy arrays in and out of every run) against the
KV cache in GPU memory (IO binding, slot writes on the device), same export, same process.

    python benchmarks/ort_gpu_kv.py --budgets none,1.5 --quant fp32,int4 --tokens 64 --repeats 5

prints one row per export and cache location: TTFT, prefill, decode tokens/s (medians), and
whether both locations gave the same tokens. Needs a GPU, onnxruntime-gpu and cuda-python.
"""

from __future__ import annotations

import argparse
import statistics

from ficoco_edge.benchmark import parse_budgets
from ficoco_edge.export.cli import cached_export
from ficoco_edge.runtime import Runtime
from ficoco_edge.runtime.backends import OrtBackend

IMAGE, QUESTION = "examples/red-triangle.png", "What color is the shape?"


def measure(runtime: Runtime, tokens: int, repeats: int) -> dict:
    runtime.answer(IMAGE, QUESTION, tokens + 1, ignore_stop=True)  # warm-up: arenas, cuDNN/cuBLAS handles
    results = [runtime.answer(IMAGE, QUESTION, tokens + 1, ignore_stop=True) for _ in range(repeats)]
    median = lambda key: statistics.median(getattr(r.timings, key) for r in results)  # noqa: E731
    return {"ttft_ms": median("ttft_ms"), "prefill_ms": median("prefill_ms"), "decode_tok_s": median("decode_tok_s"),
            "tokens": results[0].token_ids}


def export_parser(description: str) -> argparse.ArgumentParser:
    """The options of the GPU comparisons: which cached exports, how many tokens and answers."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--method", default="ficoco-v")
    parser.add_argument("--budgets", default="none,1.5")
    parser.add_argument("--quant", default="fp32")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    return parser


def exports(args):
    """(method, budget, quant, export directory) for each --quant x --budgets, made on first use."""
    for quant in args.quant.split(","):
        for budget in parse_budgets(args.budgets):
            method = args.method if budget is not None else "none"
            yield method, budget, quant, cached_export(args.model, method, budget, None, quant)


def main() -> None:
    args = export_parser(__doc__.splitlines()[0]).parse_args()
    print(f"{'method':>10} {'budget':>6} {'quant':>5} {'KV in':>6} {'TTFT ms':>8} {'prefill ms':>10} "
          f"{'decode tok/s':>12} {'same tokens':>11}")
    for method, budget, quant, directory in exports(args):
        device = Runtime.load(directory, device="cuda")
        host = Runtime(directory, device.manifest, OrtBackend(directory, device.manifest, "cuda"), device.tokenizer)
        rows = {"host": measure(host, args.tokens, args.repeats), "GPU": measure(device, args.tokens, args.repeats)}
        same = rows["host"]["tokens"] == rows["GPU"]["tokens"]
        for where, r in rows.items():
            print(f"{method:>10} {budget or 'none':>6} {quant:>5} {where:>6} {r['ttft_ms']:8.1f} "
                  f"{r['prefill_ms']:10.1f} {r['decode_tok_s']:12.1f} {'yes' if same else 'NO':>11}")


if __name__ == "__main__":
    main()
