"""Accuracy of exports through the runtime (onnxruntime): what a quantized export really answers."""

from __future__ import annotations

from pathlib import Path

from ficoco_edge.eval.datasets import Sample, normalize_answer


def evaluate_exports(directories: list[Path], samples: list[Sample], max_new_tokens: int = 8,
                     progress: bool = True) -> list[dict]:
    """One row per export: method, budget_tflops, quant, visual_tokens (into the last layer),
    accuracy, n, export. Greedy answers, first word compared as in the PyTorch harness."""
    from tqdm.auto import tqdm

    from ficoco_edge.runtime import Runtime

    rows = []
    for directory in directories:
        runtime = Runtime.load(directory, device="cpu")
        m = runtime.manifest
        correct = 0
        for sample in tqdm(samples, desc=Path(directory).name, disable=not progress):
            answer = runtime.answer(sample.image, sample.question, max_new_tokens).text
            correct += normalize_answer(answer) == sample.answer
        rows.append({"method": m["method"], "budget_tflops": m["budget_tflops"], "quant": m["quant"],
                     "visual_tokens": m["llm_visual_tokens_per_layer"][-1], "accuracy": round(correct / len(samples), 5),
                     "n": len(samples), "export": str(directory)})
    return rows
