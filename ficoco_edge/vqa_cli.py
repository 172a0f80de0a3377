"""The library call behind `ficoco-edge eval` (PyTorch path)."""

from __future__ import annotations

from pathlib import Path

import torch

from ficoco_edge.errors import UsageError


def _device(name: str) -> str:
    try:
        torch.device(name)
    except RuntimeError:
        raise UsageError(f"--device {name!r} is not a torch device; use cpu, cuda or cuda:N") from None
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device {name}: no CUDA GPU is visible; use --device cpu")
    return name


def run_eval(model: str, dataset: str, split: str, methods: list[str], budgets: list[float], limit: int | None,
             batch_size: int, device: str, dtype: torch.dtype, progress: bool, out: Path | None) -> list[dict]:
    """Rows of `ficoco_edge.eval.harness.evaluate`; `out` gets a JSON snapshot after every batch."""
    from ficoco_edge.eval.datasets import load_samples
    from ficoco_edge.eval.harness import evaluate, make_configs
    from ficoco_edge.eval.report import write_json
    from ficoco_edge.models.loading import load

    configs = make_configs(methods, budgets)
    samples = load_samples(dataset, split, limit)
    vlm = load(model, _device(device), dtype, progress=progress)
    snapshot = (lambda rows: write_json(rows, out)) if out is not None else None
    return evaluate(vlm, samples, configs, batch_size, progress=progress, on_batch=snapshot)
