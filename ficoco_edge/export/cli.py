"""The library call behind `ficoco-edge export`."""

from __future__ import annotations

from pathlib import Path

from ficoco_edge.errors import UsageError
from ficoco_edge.export.quantize import check_quant


def default_out(model: str, method: str, budget: float | None, keep: int | None, quant: str, target: str) -> Path:
    """./exports/<model>-<method>-<budget|keep>-<quant>[-trt]"""
    size = f"b{budget:g}" if budget is not None else (f"k{keep}" if keep is not None else "full")
    name = Path(model).stem if model.endswith(".safetensors") else Path(model).name
    return Path("exports") / f"{name}-{method}-{size}-{quant}{'-trt' if target == 'trt' else ''}"


def run_export(model: str, method: str, budget: float | None, keep: int | None, quant: str, target: str,
               out: Path | None, force: bool) -> tuple[dict, Path]:
    from ficoco_edge.export.exporter import export
    from ficoco_edge.models.loading import load
    from ficoco_edge.plan import solve_for_method

    check_quant(quant, target)
    if method != "none" and budget is None and keep is None:
        raise UsageError("give --budget B (TFLOPs) or --keep N: an export fixes its token counts")
    schedule = solve_for_method(method, budget, keep)
    out = out or default_out(model, method, budget, keep, quant, target)
    if out.exists() and not force:  # before the slow model load
        raise UsageError(f"{out} already exists; pass --force to replace it or choose another --out")
    vlm = load(model)
    return export(vlm, method, schedule, out, budget, force, quant, target, progress=True), out
