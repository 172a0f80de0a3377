"""Option types and argument checks shared by the subcommands."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from ficoco_edge.errors import UsageError

ModelOpt = Annotated[str, typer.Option("--model", help="architecture profile name or .toml path")]
MethodOpt = Annotated[str, typer.Option("--method", help="reduction method (see `ficoco-edge methods`)")]
BudgetOpt = Annotated[Optional[float], typer.Option("--budget", help="TFLOPs ceiling on LLaVA-1.5-7B's LLM prefill")]
KeepOpt = Annotated[Optional[int], typer.Option("--keep", help="visual tokens to keep (instead of --budget)")]
FormatOpt = Annotated[str, typer.Option("--format", help="table or json")]
VLMOpt = Annotated[str, typer.Option("--model", help="'embedded', a llava-hf directory or hub id, or embedded tower .safetensors")]
DeviceOpt = Annotated[str, typer.Option("--device", help="torch device: cpu, cuda, cuda:1 ...")]
DtypeOpt = Annotated[str, typer.Option("--dtype", help="fp32, bf16 or fp16")]
DTYPES = ("fp32", "bf16", "fp16")


def split_list(text: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise UsageError("expected a comma-separated list, got nothing")
    return items


def parse_float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise UsageError(f"budget {text!r} is not a number (TFLOPs, e.g. 1.5)") from None


def torch_dtype(name: str):
    import torch

    if name not in DTYPES:
        raise UsageError(f"unknown dtype {name!r}; choose one of: {', '.join(DTYPES)}")
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[name]


def check_format(fmt: str, allowed: tuple[str, ...] = ("table", "json")) -> None:
    if fmt not in allowed:
        raise UsageError(f"unknown format {fmt!r}; choose one of: {', '.join(allowed)}")
