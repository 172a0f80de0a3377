"""TensorRT against onnxruntime on the same `--target trt` exports.

    python benchmarks/tensorrt_check.py EXPORT_DIR... [--fp16] [--tokens 16] [--repeats 5] [--prebuilt]

For each export: builds its engines (`build-engine`, timed; --prebuilt: uses the engines an earlier
`build-engine` recorded, build time "-"), then answers the same questions with
the TensorRT backend and with onnxruntime on the CPU (the reference), and prints one row: greedy
tokens that agree, the largest difference in the vision graph's output and in the prefill's
last-token logits (relative to the reference's largest value), and the median TTFT, prefill and
decode speed of both backends. Needs a GPU, tensorrt and cuda-python.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from ficoco_edge.errors import UsageError
from ficoco_edge.export.engine import EngineBuildError, TextRange, build_engines
from ficoco_edge.manifest import read_manifest
from ficoco_edge.runtime import Runtime
from ficoco_edge.runtime.engine import Timings
from ficoco_edge.runtime.images import open_image

IMAGES = sorted(Path("examples").glob("*.png"))
QUESTIONS = ("What color is the shape?", "What shape is in the image?", "Is the shape red?",
             "Describe the picture in one sentence.", "How many shapes are there?")


def gaps(reference: Runtime, candidate: Runtime, image: Path, question: str) -> tuple[float, float]:
    """Largest |difference| / largest |reference value| of the vision output and of the prefill logits."""
    pixels = reference.preprocess([open_image(image)])
    ids = reference.prompt_ids(question)
    relative = lambda a, b: float(np.abs(a - b).max() / np.abs(a).max())  # noqa: E731
    vision = relative(reference.backend.vision(pixels), candidate.backend.vision(pixels))
    embeds, start = reference.embed_prompt(ids, pixels, Timings())
    logits = relative(reference.backend.prefill(embeds, start)[0], candidate.backend.prefill(embeds, start)[0])
    return vision, logits


def speed(runtime: Runtime, tokens: int, repeats: int) -> dict[str, float]:
    """Medians over `repeats` answers of exactly `tokens` tokens, after one warm-up answer."""
    runtime.answer(IMAGES[0], QUESTIONS[0], tokens, ignore_stop=True)
    timings = [runtime.answer(IMAGES[0], QUESTIONS[0], tokens, ignore_stop=True).timings for _ in range(repeats)]
    return {key: statistics.median(getattr(t, key) for t in timings) for key in ("ttft_ms", "prefill_ms", "decode_tok_s")}


def check(directory: Path, args: argparse.Namespace) -> dict:
    tick = time.perf_counter()
    if args.prebuilt:
        manifest, built_s = read_manifest(directory, verify=False), float("nan")
    else:
        text = TextRange(opt=min(64, args.max_text), max=args.max_text, new_tokens=max(args.tokens, 64))
        manifest = build_engines(directory, fp16=args.fp16, text=text, opt_level=args.opt_level)
        built_s = time.perf_counter() - tick
    reference = Runtime.load(directory, backend="ort", device="cpu")
    candidate = Runtime.load(directory, backend="trt")
    cases = [(image, question) for image in IMAGES for question in QUESTIONS]
    same = sum(reference.answer(i, q, args.tokens).token_ids == candidate.answer(i, q, args.tokens).token_ids
               for i, q in cases)
    vision, logits = np.max([gaps(reference, candidate, i, q) for i, q in cases[:3]], axis=0)
    return {"export": directory.name, "method": manifest["method"], "precision": manifest["engines"]["prefill"]["precision"],
            "build_s": built_s, "same": f"{same}/{len(cases)}", "vision_gap": vision, "logits_gap": logits,
            "trt": speed(candidate, args.tokens, args.repeats), "ort_cpu": speed(reference, args.tokens, args.repeats)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("exports", nargs="+", type=Path)
    parser.add_argument("--fp16", action="store_true", help="let TensorRT choose fp16 kernels (build-engine --fp16)")
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--opt-level", type=int, default=None, help="TensorRT builder optimization level 0-5")
    parser.add_argument("--max-text", type=int, default=512, help="most text tokens the engines take")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--prebuilt", action="store_true", help="use the engines build-engine already made")
    args = parser.parse_args()
    print(f"{'export':>24} {'method':>9} {'prec':>5} {'build s':>7} {'same':>6} {'vision gap':>10} {'logits gap':>10} "
          f"{'TTFT trt/ort ms':>16} {'prefill trt/ort ms':>18} {'decode trt/ort tok/s':>20}")
    for directory in args.exports:
        try:
            r = check(directory, args)
        except (EngineBuildError, UsageError) as exc:  # one export TensorRT refuses: say so, check the rest
            print(f"{directory.name:>24} failed: {str(exc)[:300]}", flush=True)
            continue
        trt, ort = r["trt"], r["ort_cpu"]
        print(f"{r['export']:>24} {r['method']:>9} {r['precision']:>5} {r['build_s']:7.1f} {r['same']:>6} "
              f"{r['vision_gap']:10.2e} {r['logits_gap']:10.2e} {trt['ttft_ms']:7.2f}/{ort['ttft_ms']:<8.1f} "
              f"{trt['prefill_ms']:8.2f}/{ort['prefill_ms']:<9.1f} {trt['decode_tok_s']:9.1f}/{ort['decode_tok_s']:<10.1f}",
              flush=True)


if __name__ == "__main__":
    main()
