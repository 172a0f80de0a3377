"""One reduction step of a method (registry.py names them): score tokens (filter), decide where the
removed tokens' content goes (correlate), and hand both to compress.

FiCoCo-V/L/VL, ToMe, EViT, FastV and a random floor all take this one step shape.
"""

from __future__ import annotations

import torch

from ficoco_edge.reduction import correlate, filter as filt
from ficoco_edge.reduction.compress import Plan
from ficoco_edge.reduction.registry import FicocoParams, Stages
from ficoco_edge.reduction.scores import LLMScores, VisionScores


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
