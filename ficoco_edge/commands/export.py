"""`export`: ONNX graphs at a fixed token budget."""

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
    quant: Annotated[str, typer.Option("--quant", help="fp32, int8 or int4 (LLM weights)")] = "fp32",
    target: Annotated[str, typer.Option("--target", help="ort (onnxruntime) or trt (TensorRT-ready ops)")] = "ort",
    out: Annotated[Optional[Path], typer.Option("--out", help="export directory")] = None,
    force: Annotated[bool, typer.Option("--force", help="replace an existing export")] = False,
) -> None:
    """Export ONNX graphs (vision, prefill, decode) at a fixed token budget, validated against PyTorch."""
    from ficoco_edge.export.cli import run_export

    manifest, directory = run_export(model, method, budget, keep, quant, target, out, force)
    typer.echo(f"exported {manifest['model']} / {method} / {quant} ({target}) to {directory}")
    typer.echo(f"visual tokens: {manifest['visual_tokens']} into the LLM; per layer {manifest['llm_visual_tokens_per_layer']}")
    agreement = manifest["validation"]["next_token_agreement"]
    if agreement is not None:
        typer.echo(f"next-token agreement with fp32: {agreement:.1%}")
COMMANDS = (("export", export),)
