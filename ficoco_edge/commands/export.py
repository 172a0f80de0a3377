"""`export`: ONNX graphs at a fixed token budget; `build-engine`: TensorRT engines from a trt export."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ficoco_edge.commands.common import BudgetOpt, KeepOpt, MethodOpt, VLMOpt


def export(
    model: VLMOpt = "embedded",
    method: MethodOpt = "ficoco-v",
    budget: BudgetOpt = None,
    keep: KeepOpt = None,
    quant: Annotated[str, typer.Option("--quant", help="fp32, fp16 (GPU), int8 or int4: precision of the LLM graphs")] = "fp32",
    target: Annotated[str, typer.Option("--target", help="ort (onnxruntime) or trt (TensorRT-ready ops)")] = "ort",
    out: Annotated[Optional[Path], typer.Option("--out", help="export directory")] = None,
    force: Annotated[bool, typer.Option("--force", help="replace an existing export")] = False,
    calibration: Annotated[Optional[str], typer.Option(
        "--calibration", help="int8: prompts that smooth the MLP outliers, 'easy-vqa', a .jsonl of {image, question} lines, or 'none' "
                              "(8-bit block down projections; default for models other than the embedded one)")] = None,
) -> None:
    """Export ONNX graphs (vision, prefill, decode) at a fixed token budget, validated against PyTorch."""
    from ficoco_edge.export.cli import run_export

    manifest, directory = run_export(model, method, budget, keep, quant, target, out, force, calibration=calibration)
    typer.echo(f"exported {manifest['model']} / {method} / {quant} ({target}) to {directory}")
    typer.echo(f"visual tokens: {manifest['visual_tokens']} into the LLM; per layer {manifest['llm_visual_tokens_per_layer']}")
    agreement = manifest["validation"]["next_token_agreement"]
    if agreement is not None:
        typer.echo(f"next-token agreement with fp32: {agreement:.1%}")


def build_engine(
    directory: Annotated[Path, typer.Argument(help="an export made with --target trt")],
    fp16: Annotated[bool, typer.Option("--fp16", help="let TensorRT use fp16 kernels (fp32 exports)")] = False,
    int8: Annotated[bool, typer.Option("--int8", help="INT8 weights (exports made with --quant int8 --target trt)")] = False,
    min_text: Annotated[int, typer.Option("--min-text", help="fewest text tokens besides the image")] = 1,
    opt_text: Annotated[int, typer.Option("--opt-text", help="text tokens TensorRT tunes for")] = 64,
    max_text: Annotated[int, typer.Option("--max-text", help="most text tokens besides the image")] = 512,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", help="decode steps per prompt (cache capacity)")] = 64,
    opt_level: Annotated[Optional[int], typer.Option("--opt-level", help="TensorRT builder optimization level 0-5 "
                                                     "(default TensorRT's 3; lower builds faster)")] = None,
) -> None:
    """Build TensorRT engines (needs the `tensorrt` package and an NVIDIA GPU) beside an export's graphs."""
    from ficoco_edge.export.engine import TextRange, build_engines

    manifest = build_engines(directory, fp16, int8, TextRange(min_text, opt_text, max_text, max_new_tokens), opt_level)
    for engine in manifest["engines"].values():
        typer.echo(f"{directory / engine['file']}: {engine['precision']}")


COMMANDS = (("export", export), ("build-engine", build_engine))
