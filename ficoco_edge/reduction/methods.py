"""Reduction methods as choices of filter, correlate and compress stages, and a registry.

FiCoCo-V/L/VL, ToMe, EViT, FastV and a random floor are all one step shape: score tokens
(filter), decide where removed tokens' content goes (correlate), apply it (compress).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

import torch

from ficoco_edge.errors import UsageError
from ficoco_edge.reduction import correlate, filter as filt
from ficoco_edge.reduction.compress import Plan
from ficoco_edge.reduction.scores import LLMScores, VisionScores


@dataclass(frozen=True)
class FicocoParams:
    """Hyperparameters, defaulting to the paper and the official code."""

    beta: float = 0.35  # FiCoCo-V filter: weight of [CLS] relevance against patch similarity
    window: int = 2  # FiCoCo-V local penalty window (2x2 cells)
    penalty_scale: float = 2.0  # FiCoCo-V local penalty scaling coefficient
    eps: float = 0.998  # quantile a target's correlation must exceed (both sides)
    g: float = 0.6  # FiCoCo-L filter: weight of vision redundancy against text relevance
    a: float = 0.6  # FiCoCo-L correlate: weight of direct against indirect (via text) correlation


@dataclass(frozen=True)
class Stages:
    filter: str
    correlate: str  # "quantile" | "bipartite" | "fuse" | "none"

    @property
    def extra_removed(self) -> int:
        """EViT removes one more token than it reduces by: the fused token replaces them."""
        return 1 if self.correlate == "fuse" else 0


@dataclass(frozen=True)
class Method:
    name: str
    summary: str
    vision: Stages | None = None
    llm: Stages | None = None

    @property
    def side(self) -> str:
        """'none', 'vision', 'llm' or 'both': where the method removes tokens."""
        return {(False, False): "none", (True, False): "vision", (False, True): "llm"}.get(
            (self.vision is not None, self.llm is not None), "both"
        )


_FICOCO_V = Stages("ficoco-v", "quantile")
_FICOCO_L = Stages("ficoco-l", "quantile")

METHODS = MappingProxyType(
    {
        m.name: m
        for m in (
            Method("none", "no reduction: the unpatched model's behaviour"),
            Method("ficoco-v", "FiCoCo-V: [CLS]/local-redundancy filter, quantile merge, inside the vision tower", _FICOCO_V),
            Method("ficoco-l", "FiCoCo-L: text-relevance filter, direct+indirect merge, inside the LLM after layer K", llm=_FICOCO_L),
            Method("ficoco-vl", "FiCoCo-VL: FiCoCo-V in the vision tower, then FiCoCo-L in the LLM", _FICOCO_V, _FICOCO_L),
            Method("tome", "ToMe: bipartite soft matching with size-weighted merge, inside the vision tower", Stages("bipartite", "bipartite")),
            Method("evit", "EViT: keep the tokens [CLS] attends to, fuse the rest into one token", Stages("cls-attention", "fuse")),
            Method("fastv", "FastV: drop the image tokens that receive least attention at LLM layer K", llm=Stages("attention-received", "none")),
            Method("random", "random drop in the vision tower at the same schedule: the accuracy floor", Stages("random", "none")),
        )
    }
)


def get_method(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise UsageError(f"unknown method {name!r}; choose one of: {', '.join(METHODS)}") from None


def _finish(stages: Stages, src: torch.Tensor, keep: torch.Tensor, targets) -> Plan:
    if stages.correlate == "fuse":
        return Plan(keep, src, fuse_weight=targets)
    if targets is None:
        return Plan(keep, src)
    return Plan(keep, src, *targets)


def plan_vision_step(
    stages: Stages, scores: VisionScores, grid_pos: torch.Tensor, grid_side: int, r: int, p: FicocoParams,
    size: torch.Tensor | None = None,
) -> Plan:
    """One reduction of r patch tokens in a vision layer.

    grid_pos: (b, n) original cells; size: (b, n, 1) token sizes (ToMe's rounds merge keys by size).
    """
    if stages.filter == "bipartite":
        size = torch.ones_like(grid_pos, dtype=scores.q.dtype).unsqueeze(-1) if size is None else size
        return Plan(*correlate.bipartite_rounds(scores.keys, size, r))
    if stages.filter == "ficoco-v":
        red = filt.ficoco_v_redundancy(scores.logits, grid_pos, grid_side, p.beta, p.window, p.penalty_scale)
    elif stages.filter == "cls-attention":
        red = filt.cls_attention_redundancy(scores.cls_probs)
    else:
        red = filt.random_redundancy(grid_pos.to(scores.q.dtype))
    src, keep = filt.split(red, r + stages.extra_removed)
    targets = None
    if stages.correlate == "quantile":
        targets = correlate.quantile_targets(scores.logits[:, 1:, 1:], src, keep, p.eps)
    elif stages.correlate == "fuse":
        targets = correlate.fuse_weights(scores.cls_probs, src)
    return _finish(stages, src, keep, targets)


def plan_llm_step(stages: Stages, scores: LLMScores, r: int, p: FicocoParams) -> Plan:
    """One reduction of r image tokens in an LLM layer; indices are into the image span."""
    if stages.filter == "ficoco-l":
        red = filt.ficoco_l_redundancy(scores.vv, scores.tv, scores.text_valid, p.g)
    else:
        red = filt.attention_received_redundancy(scores.received)
    src, keep = filt.split(red, r)
    targets = None
    if stages.correlate == "quantile":
        rows = p.a * scores.vv + (1 - p.a) * (scores.vt @ scores.tv)
        targets = correlate.quantile_targets(rows, src, keep, p.eps, exclude_self=True)
    return _finish(stages, src, keep, targets)
