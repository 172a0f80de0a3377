"""`plan`: a method + budget (or keep count) -> token schedule and what it costs on a model."""

from __future__ import annotations

from dataclasses import asdict

from ficoco_edge.arch import load_arch
from ficoco_edge.cost import llm_matmul_flops, llmviewer_cost, physical_cost
from ficoco_edge.errors import UsageError
from ficoco_edge.reduction.registry import get_method
from ficoco_edge.reduction.schedule import Schedule, solve_schedule

QUANTS = ("fp16", "int8", "int4")


def solve_for_method(method: str, budget: float | None = None, keep: int | None = None,
                     llm_layer: int = 2) -> Schedule:
    """The schedule `method` runs at `budget` TFLOPs (a ceiling on LLaVA-1.5-7B) or `keep` tokens."""
    side = get_method(method).side
    if side == "none" and budget is None and keep is None:
        return Schedule()
    return solve_schedule(side, budget_tflops=budget, keep=keep, llm_layer=llm_layer)


MAX_PROMPT_TOKENS = 1 << 20  # past any LLaVA-style model's context; larger counts only overflow the tables


def make_plan(model: str, method: str, budget: float | None = None, keep: int | None = None,
              text_tokens: int = 60, quant: str = "fp16", llm_layer: int = 2) -> dict:
    """Schedule and costs as a JSON-ready dict (LLM-Viewer mode at top level, decimal units)."""
    if quant not in QUANTS:
        raise UsageError(f"unknown quant {quant!r}; choose one of: {', '.join(QUANTS)}")
    if not 1 <= text_tokens <= MAX_PROMPT_TOKENS:
        raise UsageError(f"--text-tokens must be between 1 and {MAX_PROMPT_TOKENS}, got {text_tokens}")
    if keep is not None and keep < 0:
        raise UsageError(f"--keep must be >= 0, got {keep}")
    arch = load_arch(model)
    schedule = solve_for_method(method, budget, keep, llm_layer)
    llm_tokens = schedule.llm_tokens_per_layer(arch.llm.layers, text_tokens)
    viewer = llmviewer_cost(arch.llm, llm_tokens, quant)
    physical = physical_cost(arch, schedule.vision_tokens_per_layer(arch.vision), llm_tokens, quant)
    return {
        "model": arch.name,
        "method": method,
        "quant": quant,
        "budget_tflops": budget,
        "text_tokens": text_tokens,
        "visual_tokens_in": schedule.visual_tokens_in,
        "vision_keep": schedule.vision_keep,
        "visual_tokens_out": schedule.llm_visual_keep,
        "llm_layer": schedule.llm_layer if schedule.reduces_llm else None,
        "vision_tokens_per_layer": schedule.vision_tokens_per_layer(arch.vision),
        "llm_tokens_per_layer": llm_tokens,
        "tflops": round(viewer.tflops, 4),
        "memory_access_gb": round(viewer.memory_access_gb, 3),
        "kv_cache_mb": round(viewer.kv_cache_mb, 2),
        "physical": {
            **{k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(physical).items()},
            "llm_matmul_tflops": round(llm_matmul_flops(arch.llm, llm_tokens) / 1e12, 6),
            "note": "causal attention, grouped-query KV, vision tower + projector, LM head on the last token; "
                    "llm_matmul_tflops: the LLM's matrix products as a static graph runs them (full s x s attention)",
        },
    }
