"""`ficoco-edge` command line: thin commands that parse, call the library and print."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Optional

import typer

from ficoco_edge.errors import UsageError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="FiCoCo token reduction for edge LLaVA inference.")

ModelOpt = Annotated[str, typer.Option("--model", help="architecture profile name or .toml path")]
MethodOpt = Annotated[str, typer.Option("--method", help="reduction method (see `ficoco-edge methods`)")]
BudgetOpt = Annotated[Optional[float], typer.Option("--budget", help="TFLOPs ceiling on LLaVA-1.5-7B's LLM prefill")]
KeepOpt = Annotated[Optional[int], typer.Option("--keep", help="visual tokens to keep (instead of --budget)")]
FormatOpt = Annotated[str, typer.Option("--format", help="table or json")]


@app.callback()
def _root(debug: Annotated[bool, typer.Option("--debug", help="show tracebacks")] = False) -> None:
    """FiCoCo token reduction for edge LLaVA inference."""


@app.command()
def methods() -> None:
    """List the registered reduction methods."""
    from ficoco_edge.reduction.methods import METHODS

    for m in METHODS.values():
        typer.echo(f"{m.name:<10} [{m.side:<6}] {m.summary}")


@app.command()
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

    _check_format(fmt)
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


def _check_format(fmt: str, allowed: tuple[str, ...] = ("table", "json")) -> None:
    if fmt not in allowed:
        raise UsageError(f"unknown format {fmt!r}; choose one of: {', '.join(allowed)}")


def main() -> None:
    """Entry point: UsageError -> one line and exit 2; other errors -> one line and exit 1."""
    debug = "--debug" in sys.argv
    try:
        app(standalone_mode=False)
    except UsageError as exc:
        if debug:
            raise
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("aborted", err=True)
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:  # noqa: BLE001 - the CLI's last line of defence
        if debug:
            raise
        if hasattr(exc, "show") and hasattr(exc, "exit_code"):  # typer's own usage errors
            exc.show()
            sys.exit(exc.exit_code)
        typer.echo(f"error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)", err=True)
        sys.exit(1)
