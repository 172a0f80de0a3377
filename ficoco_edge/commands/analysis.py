"""`methods` and `plan`: what the reduction methods are and what they cost, no model needed."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from ficoco_edge.commands.common import BudgetOpt, FormatOpt, KeepOpt, MethodOpt, ModelOpt, check_format


def methods() -> None:
    """List the registered reduction methods."""
    from ficoco_edge.reduction.registry import METHODS

    for m in METHODS.values():
        typer.echo(f"{m.name:<10} [{m.side:<6}] {m.summary}")


def plan(
    model: ModelOpt = "llava-1.5-7b",
    method: MethodOpt = "ficoco-v",
    budget: BudgetOpt = None,
    keep: KeepOpt = None,
    text_tokens: Annotated[int, typer.Option("--text-tokens", help="text tokens in the prompt")] = 60,
    quant: Annotated[str, typer.Option("--quant", help="fp16, int8 or int4")] = "fp16",
    llm_layer: Annotated[int, typer.Option("--llm-layer", help="K: LLM layers that see every visual token")] = 2,
    fmt: FormatOpt = "table",
) -> None:
    """Token schedule for a method at a budget, and its cost on a model."""
    from ficoco_edge.plan import make_plan

    check_format(fmt)
    result = make_plan(model, method, budget, keep, text_tokens, quant, llm_layer)
    if fmt == "json":
        typer.echo(json.dumps(result, indent=2))
        return
    phys = result["physical"]
    rows = [
        ("model / method / quant", f"{result['model']} / {result['method']} / {result['quant']}"),
        ("budget (TFLOPs ceiling)", result["budget_tflops"]),
        ("visual tokens in -> vision out -> LLM", f"{result['visual_tokens_in']} -> {result['vision_keep']} -> {result['visual_tokens_out']}"),
        ("LLM reduction after layer", result["llm_layer"]),
        ("TFLOPs (LLM-Viewer)", result["tflops"]),
        ("memory access GB (LLM-Viewer)", result["memory_access_gb"]),
        ("KV cache MB (LLM-Viewer)", result["kv_cache_mb"]),
        ("physical TFLOPs LLM / vision / total", f"{phys['llm_tflops']} / {phys['vision_tflops']} / {phys['total_tflops']}"),
        ("physical weights GB / KV MB", f"{phys['weight_bytes'] / 1e9:.3f} / {phys['kv_bytes'] / 1e6:.2f}"),
    ]
    for name, value in rows:
        typer.echo(f"{name:<40} {value}")


COMMANDS = (("methods", methods), ("plan", plan))
