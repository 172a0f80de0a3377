"""`profile`: the paper's cost tables recomputed, physical costs, GPU measurements, device predictions."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from ficoco_edge.commands.common import KeepOpt, ModelOpt, parse_float, split_list
from ficoco_edge.errors import UsageError

MethodsOpt = Annotated[str, typer.Option("--methods", help="comma-separated reduction methods")]
QuantsOpt = Annotated[str, typer.Option("--quant", help="comma-separated: fp16, int8, int4")]
ModeOpt = Annotated[str, typer.Option("--mode", help="llmviewer (paper's count), physical, or measured (CUDA GPU; --gpu cpu: onnxruntime exports)")]
BudgetTextOpt = Annotated[Optional[str], typer.Option("--budget", help="TFLOPs ceiling on LLaVA-1.5-7B's LLM "
                                                      "prefill (default 1.5 unless --keep)")]
DeviceProfileOpt = Annotated[Optional[str], typer.Option(
    "--device", help="device profile (jetson-orin-nano-8gb, rtx-4090, h100-sxm, ... or a .toml): "
                     "predicted TTFT/decode ceilings and whether it fits")]


def _int(text: str, name: str, minimum: int, maximum: int | None = None) -> int:
    try:
        value = int(text)
    except ValueError:
        raise UsageError(f"{name} {text!r} is not a whole number") from None
    if value < minimum:
        raise UsageError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise UsageError(f"{name} must be <= {maximum}, got {value}")
    return value


def profile(
    model: ModelOpt = "llava-1.5-7b",
    methods: MethodsOpt = "none,ficoco-v,ficoco-l,ficoco-vl",
    quant: QuantsOpt = "fp16,int8,int4",
    mode: ModeOpt = "llmviewer",
    budget: BudgetTextOpt = None,
    keep: KeepOpt = None,
    device: DeviceProfileOpt = None,
    batch: Annotated[str, typer.Option("--batch", help="sequences per batch")] = "1",
    context: Annotated[Optional[str], typer.Option(
        "--context", help="text tokens per sequence at the end of generation (prompt + answer); default: the prompt")] = None,
    text_tokens: Annotated[str, typer.Option("--text-tokens", help="text tokens in the prompt")] = "60",
    kv_bits: Annotated[str, typer.Option("--kv-bits", help="KV-cache bits for physical/device figures: 16, 8, 4")] = "16",
    llm_layer: Annotated[str, typer.Option("--llm-layer", help="K: LLM layers that see every visual token")] = "2",
    fmt: Annotated[str, typer.Option("--format", help="md or json")] = "md",
    plot: Annotated[Optional[str], typer.Option("--plot", help="also write a PNG: KV/memory and TTFT against budget")] = None,
    save: Annotated[Optional[str], typer.Option("--save", help="also write PREFIX.md and PREFIX.json")] = None,
    checkpoint: Annotated[Optional[str], typer.Option("--checkpoint", help="measured: a llava-hf checkpoint instead of random weights")] = None,
    gpu: Annotated[str, typer.Option("--gpu", help="measured: torch device (cuda, cuda:N), or cpu for the embedded model's onnxruntime exports")] = "cuda",
    new_tokens: Annotated[str, typer.Option("--new-tokens", help="measured: tokens decoded per timing")] = "32",
    reps: Annotated[str, typer.Option("--reps", help="measured: TTFT repetitions (median)")] = "5",
) -> None:
    """Cost tables per method x quant: LLM-Viewer (with the paper's Tables 8/9), physical, or measured on a GPU."""
    from ficoco_edge.profile.report import check_format, render, save as save_report

    check_format(fmt)
    _check_outputs(plot, save)
    setting = _setting(model, methods, quant, budget, keep, batch, context, text_tokens, kv_bits, llm_layer, checkpoint)
    device_profile = _device(device)
    gpu_run = _gpu_run(gpu, checkpoint, new_tokens, reps) if mode == "measured" else None
    from ficoco_edge.profile.run import profile_report

    command = "ficoco-edge " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    report = profile_report(mode, setting, device_profile, gpu_run, command)
    typer.echo(render(report, fmt), nl=False)
    if save is not None:
        for path in save_report(report, save):
            typer.echo(f"wrote {path}", err=True)
    if plot is not None:
        from ficoco_edge.profile.devices import available_devices, load_device
        from ficoco_edge.profile.plots import plot_budgets

        devices = [device_profile] if device_profile else [load_device(d) for d in available_devices()]
        typer.echo(f"wrote {plot_budgets(setting, devices, plot)}", err=True)


def _setting(model, methods, quant, budget, keep, batch, context, text_tokens, kv_bits, llm_layer, checkpoint):
    from ficoco_edge.plan import MAX_PROMPT_TOKENS
    from ficoco_edge.profile.tables import Setting

    arch = _arch(model, checkpoint)
    text = _int(text_tokens, "--text-tokens", 1, MAX_PROMPT_TOKENS)
    ctx = None if context is None else _int(context, "--context", text, MAX_PROMPT_TOKENS)
    bits = _int(kv_bits, "--kv-bits", 4)
    if bits not in (4, 8, 16):
        raise UsageError(f"--kv-bits must be 16, 8 or 4, got {bits}")
    if keep is not None and keep < 0:
        raise UsageError(f"--keep must be >= 0, got {keep}")
    if keep is not None and budget is not None:
        raise UsageError("give --budget B (TFLOPs) or --keep N, not both")
    return Setting(arch, tuple(split_list(methods)), tuple(split_list(quant)),
                   None if keep is not None else parse_float(budget or "1.5"), keep, _int(batch, "--batch", 1),
                   text, ctx, bits, _int(llm_layer, "--llm-layer", 1))


def _check_outputs(plot: str | None, save: str | None) -> None:
    """--plot and --save's two files, checked before anything is computed or written."""
    from ficoco_edge.outputs import check_output, check_plot_path
    from ficoco_edge.profile.report import FORMATS

    if plot is not None:
        check_plot_path(plot)
    if save is not None:
        if not Path(save).name or save.endswith(("/", "\\")):
            raise UsageError(f"--save takes a path prefix such as results/profile (writes .md and .json), got {save!r}")
        for fmt in FORMATS:
            check_output(Path(f"{save}.{fmt}"), flag="--save")


def _arch(model: str, checkpoint: str | None):
    from ficoco_edge.arch import load_arch

    if checkpoint is None:
        return load_arch(model)
    from transformers import AutoConfig

    from ficoco_edge.arch import Arch
    from ficoco_edge.models.llava import llm_arch, vision_arch

    try:
        config = AutoConfig.from_pretrained(checkpoint)
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read checkpoint config {checkpoint!r}: {exc}") from exc
    return Arch(Path(checkpoint).name, llm_arch(config), vision_arch(config), config.text_config.hidden_size,
                f"checkpoint {checkpoint}")


def _device(device: str | None):
    if device is None:
        return None
    from ficoco_edge.profile.devices import load_device

    return load_device(device)


def _gpu_run(gpu: str, checkpoint: str | None, new_tokens: str, reps: str):
    from ficoco_edge.profile.measure import MeasureSettings
    from ficoco_edge.profile.run import GPURun

    settings = MeasureSettings(new_tokens=_int(new_tokens, "--new-tokens", 1), ttft_reps=_int(reps, "--reps", 1))
    return GPURun(gpu, checkpoint, settings)


COMMANDS = (("profile", profile),)
