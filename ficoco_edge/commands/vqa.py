"""`eval`: VQA accuracy of methods x budgets with the PyTorch model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from ficoco_edge.commands.common import (DeviceOpt, DtypeOpt, FormatOpt, VLMOpt, check_format,
                                         parse_float, split_list, torch_dtype)
from ficoco_edge.errors import UsageError
from ficoco_edge.outputs import check_output, check_plot_path


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
    exports: Annotated[Optional[str], typer.Option("--exports", help="comma-separated export directories: "
                                                   "evaluate them through the runtime instead of --methods/--budgets")] = None,
) -> None:
    """Exact-match accuracy of methods x budgets on a VQA dataset (or of exports, through the runtime)."""
    from ficoco_edge.eval import report

    check_format(fmt)
    _check_outputs(out, plot, dataset)
    if batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {batch_size}")
    if exports is not None:
        from ficoco_edge.eval.datasets import load_samples
        from ficoco_edge.eval.exports import evaluate_exports

        rows = evaluate_exports([Path(d) for d in split_list(exports)], load_samples(dataset, split, limit), progress=progress)
        if out is not None:
            report.write_json(rows, out)
        typer.echo(json.dumps(rows, indent=2) if fmt == "json" else report.table(rows))
        return
    from ficoco_edge.vqa_cli import run_eval  # the PyTorch model: needs the export tools

    rows = run_eval(model, dataset, split, split_list(methods_), [parse_float(b) for b in split_list(budgets)], limit,
                    batch_size, device, torch_dtype(dtype), progress, out)
    if plot is not None:
        report.plot(rows, plot, f"{model} on {dataset} ({split}), n={rows[0]['n']}")
    typer.echo(json.dumps(rows, indent=2) if fmt == "json" else report.table(rows))


def _check_outputs(out: Path | None, plot: Path | None, dataset: str) -> None:
    """--out and --plot: writable-looking, apart from each other and from a --dataset file."""
    if out is not None:
        check_output(out, Path(dataset))
    if plot is not None:
        check_plot_path(plot)
        if out is not None and Path(out).absolute() == Path(plot).absolute():
            raise UsageError(f"--out and --plot are both {out}; give them different paths")


COMMANDS = (("eval", eval_),)
