"""The library calls behind `ficoco-edge run` and `ficoco-edge eval` (PyTorch path)."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from ficoco_edge.errors import UsageError


def _device(name: str) -> str:
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device {name}: no CUDA GPU is visible; use --device cpu")
    return name


def answer_one(image: str, question: str, model: str, method: str, budget: float | None, keep: int | None,
               max_new_tokens: int, device: str, dtype: torch.dtype) -> tuple[str, str]:
    """(answer, one-line summary of what ran)."""
    from ficoco_edge.models.llava import reduced
    from ficoco_edge.models.loading import load
    from ficoco_edge.plan import solve_for_method
    from ficoco_edge.runtime.images import open_image

    picture = open_image(image)  # fail on a bad image before loading the model
    schedule = solve_for_method(method, budget, keep)
    vlm = load(model, _device(device), dtype)
    start = time.perf_counter()
    with reduced(vlm.model, method, schedule):
        answer = vlm.answer([picture], [question], max_new_tokens)[0]
    seconds = time.perf_counter() - start
    info = (f"[{vlm.name} | {method} | visual tokens {schedule.visual_tokens_in} -> {schedule.llm_visual_keep} "
            f"| {seconds:.2f} s on {device}]")
    return answer, info


def run_eval(model: str, dataset: str, split: str, methods: list[str], budgets: list[float], limit: int | None,
             batch_size: int, device: str, dtype: torch.dtype, progress: bool, out: Path | None) -> list[dict]:
    """Rows of `ficoco_edge.eval.harness.evaluate`; `out` gets a JSON snapshot after every batch."""
    from ficoco_edge.eval.datasets import load_samples
    from ficoco_edge.eval.harness import evaluate, make_configs
    from ficoco_edge.eval.report import write_json
    from ficoco_edge.models.loading import load

    configs = make_configs(methods, budgets)
    samples = load_samples(dataset, split, limit)
    vlm = load(model, _device(device), dtype)
    snapshot = (lambda rows: write_json(rows, out)) if out is not None else None
    return evaluate(vlm, samples, configs, batch_size, progress=progress, on_batch=snapshot)
