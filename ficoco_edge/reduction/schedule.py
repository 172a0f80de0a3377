"""Token schedules: how many visual tokens each vision and LLM layer sees, and budget -> schedule.

A `--budget B` is a ceiling in TFLOPs of the reference model's LLM prefill (LLaVA-1.5-7B),
counted as LLM-Viewer counts it (`ficoco_edge.cost.llmviewer_cost`, fp16), with the paper's
reference prompt of 576 image tokens + 60 text tokens. The solved schedule applies unchanged to
any model with LLaVA token geometry; its cost there is reported separately.
"""

from __future__ import annotations

import math

from dataclasses import dataclass
from typing import Callable

from ficoco_edge.arch import Arch, VisionArch, load_arch
from ficoco_edge.cost import llmviewer_cost
from ficoco_edge.errors import UsageError

SIDES = ("none", "vision", "llm", "both")
SOLVE_TEXT_TOKENS = 60
"""Text tokens of the paper's reference prompt; budgets are always solved with it."""
LABEL_TOLERANCE_TFLOPS = 0.05
"""A budget this close above the unreduced cost names it (the paper labels 8.453 as 8.5)."""


@dataclass(frozen=True)
class Schedule:
    """Visual-token counts through a LLaVA model.

    visual_tokens_in: patch tokens entering the vision tower (576 for 336/14).
    vision_keep: patch tokens leaving the tower (output of `feature_layer_index`).
    llm_layer: K. LLM layers 0..K-1 see `vision_keep` visual tokens, layers K.. see `llm_keep`;
        the reduction runs inside layer K-1, after its attention.
    llm_keep: visual tokens from layer K on; None = no LLM reduction (= vision_keep).
    vision_start: first vision layer that reduces; None = vision.layers // 2.
    """

    visual_tokens_in: int = 576
    vision_keep: int = 576
    llm_layer: int = 2
    llm_keep: int | None = None
    vision_start: int | None = None

    def __post_init__(self) -> None:
        n_in, keep = self.visual_tokens_in, self.vision_keep
        if n_in < 0 or not 0 <= keep <= n_in:
            raise UsageError(f"vision_keep {keep} must be in 0..{n_in} (visual_tokens_in)")
        if self.llm_keep is not None and not 0 <= self.llm_keep <= keep:
            raise UsageError(f"llm_keep {self.llm_keep} must be in 0..{keep} (vision_keep)")
        if self.llm_layer < 1:
            raise UsageError(f"llm_layer {self.llm_layer} must be >= 1")
        if self.vision_start is not None and self.vision_start < 0:
            raise UsageError(f"vision_start {self.vision_start} must be >= 0")

    @property
    def reduces_llm(self) -> bool:
        return self.llm_keep is not None and self.llm_keep < self.vision_keep

    @property
    def llm_visual_keep(self) -> int:
        """Visual tokens from layer K on."""
        return self.vision_keep if self.llm_keep is None else self.llm_keep

    def vision_tokens_per_layer(self, vision: VisionArch) -> list[int]:
        """Patch tokens at the input of each vision layer, then the last layer's output.

        Length vision.layers + 1 (the indexing of HF `hidden_states`); [CLS] not included.
        Entry feature_layer_index + 1 (the output LLaVA uses) is exactly `vision_keep`.
        """
        removed = self.vision_reductions(vision)
        tokens = [self.visual_tokens_in]
        for r in removed:
            tokens.append(tokens[-1] - r)
        return tokens

    def vision_reductions(self, vision: VisionArch) -> list[int]:
        """Tokens removed inside each vision layer (length vision.layers).

        The cut (visual_tokens_in - vision_keep) is spread as evenly as possible over layers
        vision_start..feature_layer_index, earlier layers taking the remainder.
        """
        self._check_geometry(vision)
        start, last = self._vision_start(vision), vision.feature_layer_index
        n = last - start + 1
        base, extra = divmod(self.visual_tokens_in - self.vision_keep, n)
        counts = [0] * vision.layers
        for i in range(n):
            counts[start + i] = base + (1 if i < extra else 0)
        return counts

    def llm_visual_tokens_per_layer(self, n_layers: int) -> list[int]:
        """Visual tokens at the input of each LLM layer (= what its KV cache holds)."""
        if self.reduces_llm and not self.llm_layer < n_layers:
            raise UsageError(f"llm_layer {self.llm_layer} must be in 1..{n_layers - 1} "
                             f"for an LLM of {n_layers} layers")
        k = self.llm_layer if self.reduces_llm else n_layers
        return [self.vision_keep] * k + [self.llm_visual_keep] * (n_layers - k)

    def llm_tokens_per_layer(self, n_layers: int, text_tokens: int) -> list[int]:
        """All tokens (visual + text) at the input of each LLM layer."""
        if text_tokens < 0:
            raise UsageError(f"text_tokens {text_tokens} must be >= 0")
        return [v + text_tokens for v in self.llm_visual_tokens_per_layer(n_layers)]

    def _vision_start(self, vision: VisionArch) -> int:
        start = vision.layers // 2 if self.vision_start is None else self.vision_start
        if not 0 <= start <= vision.feature_layer_index:
            raise UsageError(f"vision_start {start} must be in 0..{vision.feature_layer_index} "
                             f"(feature_layer_index)")
        return start

    def _check_geometry(self, vision: VisionArch) -> None:
        if vision.num_patches != self.visual_tokens_in:
            raise UsageError(f"schedule expects {self.visual_tokens_in} patch tokens, the vision "
                             f"tower makes {vision.num_patches}")


def schedule_for(side: str, keep: int, n_in: int = 576, llm_layer: int = 2,
                 vl_ratio: int = 2) -> Schedule:
    """The schedule a side names for `keep` tokens (no budget involved)."""
    _check_side(side)
    if not 0 <= keep <= n_in:
        raise UsageError(f"keep {keep} must be in 0..{n_in}")
    if side == "none":
        return Schedule(n_in, n_in, llm_layer)
    if side == "vision":
        return Schedule(n_in, keep, llm_layer)
    if side == "llm":
        return Schedule(n_in, n_in, llm_layer, keep)
    return Schedule(n_in, min(n_in, vl_ratio * keep), llm_layer, keep)


def schedule_tflops(schedule: Schedule, reference: Arch,
                    text_tokens: int = SOLVE_TEXT_TOKENS) -> float:
    """LLM-Viewer fp16 TFLOPs of the reference model's LLM prefill under `schedule`."""
    n_layers = reference.llm.layers
    tokens = schedule.llm_tokens_per_layer(n_layers, text_tokens)
    return llmviewer_cost(reference.llm, tokens, "fp16").tflops


def solve_schedule(side: str, *, budget_tflops: float | None = None, keep: int | None = None,
                   text_tokens: int = SOLVE_TEXT_TOKENS, llm_layer: int = 2, vl_ratio: int = 2,
                   reference: Arch | None = None) -> Schedule:
    """Budget (or keep count) -> Schedule. reference: None = LLaVA-1.5-7B.

    side: none | vision (FiCoCo-V: vision_keep = keep) | llm (FiCoCo-L: llm_keep = keep after
    layer K) | both (FiCoCo-VL: llm_keep = keep, vision_keep = min(576, vl_ratio*keep)).
    budget_tflops: ceiling; the result is the largest integer keep whose cost is <= it.
    text_tokens: text tokens of the prompt the budget is counted with. Keep the default 60
    (the paper's prompt, design.md) so that a budget names one schedule whatever the prompt.
    """
    _check_side(side)
    if vl_ratio < 1:
        raise UsageError(f"vl_ratio {vl_ratio} must be >= 1")
    reference = reference or load_arch("llava-1.5-7b")
    n_in = reference.vision.num_patches
    if side != "none" and (budget_tflops is None) == (keep is None):
        raise UsageError(f"give --budget B (TFLOPs) or --keep N, exactly one (side {side!r})")
    if side == "none" and keep is not None and keep != n_in:
        raise UsageError(f"side 'none' keeps all {n_in} visual tokens, got keep {keep}")
    if budget_tflops is not None:
        cost = _cost_fn(side, reference, llm_layer, vl_ratio, text_tokens)
        keep = _largest_keep(side, budget_tflops, cost, n_in)
    return schedule_for(side, n_in if keep is None else keep, n_in, llm_layer, vl_ratio)


def _cost_fn(side: str, reference: Arch, llm_layer: int, vl_ratio: int,
             text_tokens: int) -> Callable[[int], float]:
    n_in = reference.vision.num_patches
    return lambda k: schedule_tflops(schedule_for(side, k, n_in, llm_layer, vl_ratio),
                                     reference, text_tokens)


def _largest_keep(side: str, budget: float, cost: Callable[[int], float], n_in: int) -> int:
    """Largest keep in 0..n_in with cost(keep) <= budget (cost is non-decreasing in keep)."""
    if not math.isfinite(budget):
        raise UsageError(f"budget {budget} is not a number of TFLOPs (e.g. 1.5)")
    full, floor = cost(n_in), cost(0)
    if side == "none":
        if abs(budget - full) > LABEL_TOLERANCE_TFLOPS:
            raise UsageError(f"side 'none' costs {full:.3f} TFLOPs; budget {budget} names a "
                             f"reduction: pick a side (vision, llm, both) or drop the budget")
        return n_in
    if budget > full + LABEL_TOLERANCE_TFLOPS or budget < floor:
        raise UsageError(f"budget {budget} TFLOPs is outside what side {side!r} can reach: "
                         f"valid range {floor:.3f}..{full:.3f} TFLOPs (keep 0..{n_in})")
    lo, hi = 0, n_in  # invariant: cost(lo) <= budget; answer in lo..hi
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if cost(mid) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _check_side(side: str) -> None:
    if side not in SIDES:
        raise UsageError(f"unknown side {side!r}; valid: {', '.join(SIDES)}")
