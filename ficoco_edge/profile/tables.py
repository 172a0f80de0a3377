"""Analytic rows of the profiler: LLM-Viewer mode, physical mode and device predictions, per method x quant.

Each function returns JSON-ready dicts (plain numbers; units in the key names: _tflops 1e12
ops, _gb 1e9 bytes, _mb 1e6 bytes, _ms milliseconds).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

from ficoco_edge.arch import Arch
from ficoco_edge.cost import QuantBits, llmviewer_cost, physical_cost, quant_bits
from ficoco_edge.errors import UsageError
from ficoco_edge.plan import solve_for_method
from ficoco_edge.profile.devices import DeviceProfile
from ficoco_edge.profile.footprint import activation_peak_bytes, kv_cache_bytes, resident_weight_bytes, weight_bits
from ficoco_edge.profile.roofline import Workload, predict
from ficoco_edge.reduction.registry import get_method
from ficoco_edge.reduction.schedule import Schedule


@dataclass(frozen=True)
class Setting:
    """The grid the profiler walks: methods x quants of one architecture at one budget (or keep).

    budget: TFLOPs ceiling on LLaVA-1.5-7B (see `ficoco_edge.reduction.schedule`); `none` ignores it.
    text_tokens: prompt text tokens; context: text tokens per sequence at the end of generation.
    """

    arch: Arch
    methods: tuple[str, ...]
    quants: tuple[str, ...]
    budget: float | None = 1.5
    keep: int | None = None
    batch: int = 1
    text_tokens: int = 60
    context: int | None = None
    kv_bits: int = 16
    llm_layer: int = 2

    def __post_init__(self) -> None:
        for q in self.quants:
            weight_bits(q)
        for m in self.methods:
            get_method(m)
        if not self.methods or not self.quants:
            raise UsageError("give at least one method and one quant")

    def schedule(self, method: str) -> Schedule:
        """The method's schedule at this budget/keep; `none` (and any method at budget None, keep None) keeps all."""
        if get_method(method).side == "none" or (self.budget is None and self.keep is None):
            return Schedule(visual_tokens_in=self.arch.vision.num_patches,
                            vision_keep=self.arch.vision.num_patches, llm_layer=self.llm_layer)
        return solve_for_method(method, self.budget, self.keep, self.llm_layer)

    def workload(self, method: str, quant: str) -> Workload:
        context = self.text_tokens if self.context is None else self.context
        return Workload(self.arch, self.schedule(method), quant, self.batch, self.text_tokens, context, self.kv_bits)

    def grid(self):
        """(method, quant) pairs, methods outer."""
        return [(m, q) for m in self.methods for q in self.quants]


def schedule_summary(schedule: Schedule, arch: Arch, text_tokens: int) -> dict:
    """Visual tokens at each stage and the LLM tokens of the first and last layer."""
    tokens = schedule.llm_tokens_per_layer(arch.llm.layers, text_tokens)
    return {"vision_keep": schedule.vision_keep, "llm_visual_keep": schedule.llm_visual_keep,
            "llm_tokens_first": tokens[0], "llm_tokens_last": tokens[-1]}


def llmviewer_rows(setting: Setting) -> list[dict]:
    """LLM-Viewer count (the paper's accounting, W=A=KV bits) per method x quant.

    tflops_labelled: the paper's convention for INT8/INT4 rows (FP16 count x bits/16).
    resident_gb: weights + KV as a weight-only-quantized model holds them (not "memory access").
    """
    rows = []
    for method, quant in setting.grid():
        s = setting.schedule(method)
        tokens = s.llm_tokens_per_layer(setting.arch.llm.layers, setting.text_tokens)
        cost = llmviewer_cost(setting.arch.llm, tokens, quant)
        resident = resident_weight_bytes(setting.arch, quant) + kv_cache_bytes(setting.arch, tokens)
        rows.append({"method": method, "quant": quant, **schedule_summary(s, setting.arch, setting.text_tokens),
                     "tflops": round(cost.tflops, 4),
                     "tflops_labelled": round(cost.tflops * quant_bits(quant).weight / 16, 4),
                     "memory_access_gb": round(cost.memory_access_gb, 3), "kv_cache_mb": round(cost.kv_cache_mb, 2),
                     "resident_gb": round(resident / 1e9, 3)})
    return rows


def physical_rows(setting: Setting) -> list[dict]:
    """`cost.physical_cost` per method x quant with weight-only quantization (activations 16-bit,
    KV at setting.kv_bits), plus resident memory at the setting's batch and context.

    multiplied_weight_gb: weights the prefill multiplies by (physical_cost.weight_bytes);
    weights_gb: every resident weight (embeddings, LM head, all vision layers, scales);
    kv_mb: at the final context; activation_mb: estimated prefill peak.
    """
    rows = []
    for method, quant in setting.grid():
        work = setting.workload(method, quant)
        s, arch = work.schedule, setting.arch
        bits = QuantBits(weight_bits(quant), 16, setting.kv_bits)
        cost = physical_cost(arch, s.vision_tokens_per_layer(arch.vision), work.llm_tokens(work.text_tokens), bits)
        kv = kv_cache_bytes(arch, work.llm_tokens(work.context), work.batch, work.kv_bits)
        act = activation_peak_bytes(arch, work.llm_tokens(work.text_tokens), work.batch)
        weights = resident_weight_bytes(arch, quant)
        rows.append({"method": method, "quant": quant, **schedule_summary(s, arch, setting.text_tokens),
                     "llm_tflops": round(cost.llm_tflops, 4), "vision_tflops": round(cost.vision_tflops, 4),
                     "projector_tflops": round(cost.projector_tflops, 5), "total_tflops": round(cost.total_tflops, 4),
                     "multiplied_weight_gb": round(cost.weight_bytes / 1e9, 3), "weights_gb": round(weights / 1e9, 3),
                     "kv_mb": round(kv / 1e6, 2), "activation_mb": round(act / 1e6, 1),
                     "resident_gb": round((weights + kv + act) / 1e9, 3)})
    return rows


def device_rows(setting: Setting, device: DeviceProfile, usable_bytes: int | None = None) -> list[dict]:
    """Roofline ceilings and the memory verdict per method x quant on `device`."""
    rows = []
    for method, quant in setting.grid():
        p = predict(setting.workload(method, quant), device, usable_bytes)
        rows.append({"method": method, "quant": quant, "ttft_ms": round(p.ttft_s * 1e3, 2), "ttft_bound": p.ttft_bound,
                     "decode_tokens_per_s": round(p.decode_tokens_per_s, 1), "decode_bound": p.decode_bound,
                     "footprint_gb": round(p.footprint.total / 1e9, 3), "usable_gb": round(p.usable_bytes / 1e9, 3),
                     "fits": p.fits, "largest_batch": p.largest_batch, "largest_context": p.largest_context})
    return rows


def budget_sweep(setting: Setting, budgets: Sequence[float]) -> list[dict]:
    """For plots: physical rows (KV MB, resident GB) per budget x method x quant; budgets a method
    cannot reach are skipped."""
    points = []
    for budget, method in ((b, m) for b in budgets for m in setting.methods):
        try:
            rows = physical_rows(replace(setting, methods=(method,), budget=budget, keep=None))
        except UsageError:
            continue
        points += [{"budget": budget, **r} for r in rows]
    return points


def device_sweep(setting: Setting, devices: Sequence[DeviceProfile], budgets: Sequence[float]) -> list[dict]:
    """For plots: predicted ceilings per device x budget x method x quant (unreachable budgets skipped)."""
    points = []
    for budget, method in ((b, m) for b in budgets for m in setting.methods):
        try:
            one = replace(setting, methods=(method,), budget=budget, keep=None)
            per_device = [(d, device_rows(one, d)) for d in devices]
        except UsageError:
            continue
        points += [{"budget": budget, "device": d.key, **r} for d, rows in per_device for r in rows]
    return points
