"""Correlate stage: for each removed token, choose kept targets and weights.

FiCoCo picks, per source, the kept tokens whose correlation exceeds the row's epsilon-quantile
(a data-dependent count). An engine needs a fixed count, so `quantile_targets` takes the top
`quantile_k(N, eps)` kept tokens, which is an upper bound on that count, and gives zero weight to
those under the threshold. The result equals the adaptive rule (see tests/unit/test_correlate.py).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ficoco_edge.reduction.compress import Plan, gather_tokens, merge
from ficoco_edge.reduction.filter import bipartite_redundancy, split


def quantile_k(row_len: int, eps: float, n_candidates: int) -> int:
    """Static bound on how many of `row_len` values lie strictly above their eps-quantile.

    With linear interpolation the quantile sits between sorted[f] and sorted[f+1] where
    f = floor(eps * (row_len - 1)), so at most row_len - 1 - f values exceed it; one extra slot
    absorbs float rounding of f. Never more than the candidates, never less than 1.
    """
    above = row_len - math.floor(eps * (row_len - 1))
    return max(1, min(n_candidates, above))


def row_quantile(x: torch.Tensor, q: float) -> torch.Tensor:
    """torch.quantile(x, q, dim=-1, keepdim=True) (linear interpolation) from TopK, which ONNX and
    TensorRT have and `quantile` is not. x: (..., n) float -> (..., 1).

    The rank is computed in x's precision as torch does; only the top n - floor(rank) values are
    sorted, since the quantile's neighbours sit there.
    """
    n = x.shape[-1]
    real = np.float64 if x.dtype == torch.float64 else np.float32
    rank = real(q) * real(n - 1)
    below = int(math.floor(rank))
    weight = float(rank - real(below))
    top = x.topk(n - below, dim=-1).values  # descending: sorted ascending index i is top[n - 1 - i]
    low = top[..., n - 1 - below:n - below]
    high = top[..., max(n - 2 - below, 0):max(n - 1 - below, 1)]
    if weight < 0.5:  # torch.lerp's two branches, for the same rounding
        return low + weight * (high - low)
    return high - (high - low) * (1 - weight)


def quantile_targets(
    rows: torch.Tensor,
    src_idx: torch.Tensor,
    keep_idx: torch.Tensor,
    eps: float,
    exclude_self: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """FiCoCo correlate with a fixed target count.

    rows: (b, n, n) correlation of every candidate token (row) with every token (column);
    src_idx: (b, r); keep_idx: (b, n - r). The threshold is the eps-quantile of the source's
    whole row (the diagonal set to -inf first when exclude_self); targets are kept tokens above
    it, at least the best one; weights are the softmax of their correlations.
    Returns tgt_slot (b, r, k) into keep_idx and tgt_weight (b, r, k).
    """
    src_rows = gather_tokens(rows, src_idx)  # (b, r, n)
    if exclude_self:
        src_rows = src_rows.scatter(2, src_idx.unsqueeze(-1), float("-inf"))
    # Never lower the precision of the comparison (bf16/fp16 rows are ranked in fp32).
    exact = src_rows if src_rows.dtype in (torch.float32, torch.float64) else src_rows.float()
    threshold = row_quantile(exact, eps).to(rows.dtype)
    to_kept = src_rows.gather(2, keep_idx.unsqueeze(1).expand(-1, src_idx.shape[1], -1))  # (b, r, n-r)
    k = quantile_k(rows.shape[-1], eps, keep_idx.shape[1])
    top_val, tgt_slot = to_kept.topk(k, dim=-1)
    rank = torch.arange(k, device=rows.device)
    selected = (top_val > threshold) | (rank == 0)
    tgt_weight = torch.softmax(top_val.masked_fill(~selected, float("-inf")), dim=-1)
    return tgt_slot, tgt_weight


def bipartite_targets(best_match: torch.Tensor, src_idx: torch.Tensor, keep_idx: torch.Tensor):
    """ToMe: each source merges fully into its best match in set B.

    best_match: (b, n) full-list index of each token's match; returns tgt_slot (b, r, 1) into
    keep_idx and weights of one.
    """
    target = best_match.gather(1, src_idx)  # (b, r) full-list indices
    # Position of each target inside keep_idx: count kept indices below it (keep_idx ascending).
    slot = (keep_idx.unsqueeze(1) < target.unsqueeze(-1)).sum(-1)
    return slot.unsqueeze(-1), torch.ones(slot.shape + (1,), dtype=torch.float32, device=slot.device)


def fuse_weights(attention: torch.Tensor, src_idx: torch.Tensor) -> torch.Tensor:
    """EViT: sources are fused in proportion to the attention they received. (b, n) -> (b, r)."""
    return attention.gather(1, src_idx)


def bipartite_rounds(keys: torch.Tensor, size: torch.Tensor, r: int):
    """ToMe for any r < n: bipartite rounds of at most ceil(n/2) merges each, composed into one plan.

    Each round matches on the size-weighted merged keys of the previous one. A source points at
    its round's target; a target removed later passes everything on, so following the pointers
    gives each source's final kept token. Size-weighted averages compose exactly under this.
    keys: (b, n, d), size: (b, n, 1) -> keep_idx (b, n - r), src_idx (b, r), tgt_slot (b, r, 1),
    weights (b, r, 1).
    """
    b, n, _ = keys.shape
    ids = torch.arange(n, device=keys.device).expand(b, n)
    pointer, sources, rounds = ids.clone(), [], 0
    while r > 0:
        step = min(r, (ids.shape[1] + 1) // 2)
        redundancy, best = bipartite_redundancy(keys)
        src, keep = split(redundancy, step)
        slot, weight = bipartite_targets(best, src, keep)
        src_ids = ids.gather(1, src)
        pointer = pointer.scatter(1, src_ids, ids.gather(1, keep.gather(1, slot[..., 0])))
        keys, size = merge(keys, size, Plan(keep, src, slot, weight))
        ids, r, rounds = ids.gather(1, keep), r - step, rounds + 1
        sources.append(src_ids)
    src_all = torch.cat(sources, 1)
    target = pointer.gather(1, src_all)
    for _ in range(rounds - 1):
        target = pointer.gather(1, target)
    slot = (ids.unsqueeze(1) < target.unsqueeze(-1)).sum(-1, keepdim=True)
    return ids, src_all, slot, torch.ones(slot.shape, dtype=keys.dtype, device=keys.device)
