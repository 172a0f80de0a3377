"""PNG plots of a profile: KV cache and resident memory against the budget, and predicted TTFT
ceilings against the budget per device. matplotlib is imported inside `plot_budgets`."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ficoco_edge.errors import UsageError
from ficoco_edge.outputs import atomic_output, check_plot_path
from ficoco_edge.profile.devices import DeviceProfile
from ficoco_edge.profile.tables import Setting, budget_sweep, device_sweep

BUDGETS = tuple(round(0.5 + 0.25 * i, 2) for i in range(33))
"""0.5 .. 8.5 TFLOPs (the unreduced LLaVA-1.5-7B counts 8.45)."""


def plot_budgets(setting: Setting, devices: Sequence[DeviceProfile], path: str | Path,
                 budgets: Sequence[float] = BUDGETS) -> Path:
    """Write a 3-panel PNG: KV MB (fp16 cache, batch 1) and resident GB per method x quant against
    the budget; TTFT ceiling per device for the first reducing method at the first quant.
    Methods that do not reduce are drawn as horizontal lines at their one value."""
    path = check_plot_path(path)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError("--plot needs matplotlib: pip install matplotlib (or 'ficoco-edge[dev]')") from None
    points = budget_sweep(setting, budgets)
    fig, (ax_kv, ax_mem, ax_t) = plt.subplots(1, 3, figsize=(17, 5))
    styles = ("-", "--", ":", "-.")
    for i, method in enumerate(setting.methods):
        style = styles[i % len(styles)]
        kv = [p for p in points if p["method"] == method and p["quant"] == setting.quants[0]]
        ax_kv.plot([p["budget"] for p in kv], [p["kv_mb"] for p in kv], style, marker=".", label=method)
        for j, quant in enumerate(setting.quants):
            mem = [p for p in points if p["method"] == method and p["quant"] == quant]
            ax_mem.plot([p["budget"] for p in mem], [p["resident_gb"] for p in mem], style, color=f"C{j}",
                        label=f"{method} {quant}")
    top = max((p["resident_gb"] for p in points), default=1.0) * 1.3
    for k, device in enumerate(devices):
        if device.usable_bytes / 1e9 < top:
            ax_mem.axhline(device.usable_bytes / 1e9, color="grey", lw=0.8, ls=styles[k % len(styles)],
                           label=f"usable: {device.key}")
    _label(ax_kv, "KV cache (MB, fp16, batch 1)", f"{setting.arch.name}: KV cache at the budget's schedule")
    _label(ax_mem, "weights + KV + activations (GB)", "resident memory")
    _ttft_panel(ax_t, setting, devices, budgets)
    fig.tight_layout()
    with atomic_output(path, binary=True) as sink:
        fig.savefig(sink, dpi=110, format=path.suffix.lstrip(".") or "png")
    plt.close(fig)
    return path


def _ttft_panel(ax, setting: Setting, devices: Sequence[DeviceProfile], budgets: Sequence[float]) -> None:
    from ficoco_edge.reduction.registry import get_method

    reducing = [m for m in setting.methods if get_method(m).side != "none"] or list(setting.methods)
    method, quant = reducing[0], setting.quants[0]
    one = Setting(setting.arch, (method,), (quant,), setting.budget, setting.keep, setting.batch,
                  setting.text_tokens, setting.context, setting.kv_bits, setting.llm_layer)
    points = device_sweep(one, devices, budgets)
    for device in devices:
        mine = [p for p in points if p["device"] == device.key]
        ax.plot([p["budget"] for p in mine], [p["ttft_ms"] for p in mine], marker=".", label=device.key)
    ax.set_yscale("log")
    _label(ax, "TTFT ceiling (ms, log)", f"{method} {quant}: predicted TTFT ceiling per device")


def _label(ax, ylabel: str, title: str) -> None:
    ax.set_xlabel("budget (TFLOPs, LLaVA-1.5-7B LLM-Viewer ceiling)")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
