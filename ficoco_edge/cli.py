"""`ficoco-edge` command line: thin commands that parse, call the library and print."""

from __future__ import annotations

import json
import sys
from pathlib import Path
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


VLMOpt = Annotated[str, typer.Option("--model", help="'embedded', a llava-hf directory or hub id, or embedded tower .safetensors")]
DeviceOpt = Annotated[str, typer.Option("--device", help="torch device: cpu, cuda, cuda:1 ...")]
DtypeOpt = Annotated[str, typer.Option("--dtype", help="fp32, bf16 or fp16")]
DTYPES = ("fp32", "bf16", "fp16")


@app.command()
def run(
    image: Annotated[str, typer.Argument(help="image file")],
    question: Annotated[str, typer.Argument(help="question about the image")],
    model: VLMOpt = "embedded",
    method: MethodOpt = "ficoco-l",
    budget: Annotated[Optional[float], typer.Option("--budget", help="TFLOPs ceiling (default 4.2 for a reducing method)")] = None,
    keep: KeepOpt = None,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", help="longest answer in tokens")] = 32,
    device: DeviceOpt = "cpu",
    dtype: DtypeOpt = "fp32",
) -> None:
    """Answer a question about an image (PyTorch path).

    The default, FiCoCo-L at 4.2 TFLOPs, kept 93.8% of the embedded model's easy-VQA accuracy
    (docs/embedded-model.md); pass --method none for the unreduced model.
    """
    from ficoco_edge.vqa_cli import answer_one

    if not question.strip():
        raise UsageError("the question is empty; ask something about the image")
    if max_new_tokens < 1:
        raise UsageError(f"--max-new-tokens must be >= 1, got {max_new_tokens}")
    if method != "none" and budget is None and keep is None:
        budget = 4.2
    answer, info = answer_one(image, question, model, method, budget, keep, max_new_tokens, device, _dtype(dtype))
    typer.echo(answer)
    typer.echo(info, err=True)


@app.command("eval")
def eval_(
    model: VLMOpt = "embedded",
    dataset: Annotated[str, typer.Option("--dataset", help="'easy-vqa' or a .jsonl file of {image, question, answer}")] = "easy-vqa",
    split: Annotated[str, typer.Option("--split", help="easy-vqa split: train or test")] = "test",
    methods_: Annotated[str, typer.Option("--methods", help="comma-separated methods")] = "none,ficoco-v,ficoco-l,ficoco-vl",
    budgets: Annotated[str, typer.Option("--budgets", help="comma-separated TFLOPs budgets")] = "4.2,3.3,2.4,1.5",
    limit: Annotated[Optional[int], typer.Option("--limit", help="evaluate a seeded random subset of N questions")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="questions per batch")] = 16,
    fmt: FormatOpt = "table",
    plot: Annotated[Optional[Path], typer.Option("--plot", help="write an accuracy-vs-budget PNG")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="also write the JSON rows here (updated every batch)")] = None,
    device: DeviceOpt = "cpu",
    dtype: DtypeOpt = "fp32",
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="show a progress bar")] = True,
) -> None:
    """Exact-match accuracy of methods x budgets on a VQA dataset."""
    from ficoco_edge.eval import report
    from ficoco_edge.vqa_cli import run_eval

    _check_format(fmt)
    if batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {batch_size}")
    rows = run_eval(model, dataset, split, _split_list(methods_), [_float(b) for b in _split_list(budgets)], limit,
                    batch_size, device, _dtype(dtype), progress, out)
    if plot is not None:
        report.plot(rows, plot, f"{model} on {dataset} ({split}), n={rows[0]['n']}")
    typer.echo(json.dumps(rows, indent=2) if fmt == "json" else report.table(rows))


@app.command()
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


def _split_list(text: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise UsageError("expected a comma-separated list, got nothing")
    return items


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise UsageError(f"budget {text!r} is not a number (TFLOPs, e.g. 1.5)") from None


def _dtype(name: str):
    import torch

    if name not in DTYPES:
        raise UsageError(f"unknown dtype {name!r}; choose one of: {', '.join(DTYPES)}")
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[name]


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
