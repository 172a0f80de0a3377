"""Accuracy rows as a table and as a plot (accuracy against budget, one line per method)."""

from __future__ import annotations

import json
from pathlib import Path

from ficoco_edge.errors import UsageError
from ficoco_edge.outputs import atomic_output


def table(rows: list[dict]) -> str:
    """Aligned text table; `retained` is accuracy relative to the unreduced row when there is one."""
    base = next((r["accuracy"] for r in rows if r["method"] == "none"), None)
    lines = [f"{'method':<10} {'budget':>7} {'quant':>6} {'visual tokens':>13} {'accuracy':>9} {'retained':>9} {'n':>6}"]
    for r in rows:
        budget = "-" if r["budget_tflops"] is None else f"{r['budget_tflops']:g}"
        kept = f"{r['accuracy'] / base:.1%}" if base else "-"
        lines.append(f"{r['method']:<10} {budget:>7} {r.get('quant', '-'):>6} {r['visual_tokens']:>13} "
                     f"{r['accuracy']:>9.2%} {kept:>9} {r['n']:>6}")
    return "\n".join(lines)


def write_json(rows: list[dict], path: Path) -> None:
    """Write rows atomically (temporary sibling, then rename)."""
    with atomic_output(path) as sink:
        sink.write(json.dumps(rows, indent=2) + "\n")


def plot(rows: list[dict], path: Path, title: str) -> None:
    """Accuracy (%) against budget (TFLOPs), one line per method; the unreduced model as a dashed line."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise UsageError("--plot needs matplotlib: `pip install matplotlib`") from exc
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method in dict.fromkeys(r["method"] for r in rows):
        pts = sorted((r["budget_tflops"], 100 * r["accuracy"]) for r in rows if r["method"] == method)
        if method == "none":
            ax.axhline(pts[0][1], color="black", linestyle="--", linewidth=1, label="none (unreduced)")
        else:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=method)
    ax.set_xlabel("budget (TFLOPs ceiling, LLaVA-1.5-7B LLM prefill)")
    ax.set_ylabel("exact-match accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_output(path, binary=True) as sink:
        fig.savefig(sink, dpi=120, format=path.suffix.lstrip(".") or "png")
    plt.close(fig)
