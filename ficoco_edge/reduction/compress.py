"""Compress stage: apply a reduction plan to token tensors.

A plan is computed once per reducing step (filter + correlate) and then applied to every
per-token tensor: hidden states and token sizes through `merge`/`drop`/`fuse`, and any index
bookkeeping (positions, grid cells, the image span) through `gather_tokens(t, plan.keep_idx)`.
All shapes are static given Python-int token counts, so the functions export to ONNX as
Gather / TopK / MatMul, with no scatter reductions (TensorRT restricts them).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Plan:
    """Which tokens go and where their content goes.

    keep_idx:   (b, n_keep) int64, ascending: kept tokens in their original order.
    src_idx:    (b, r) int64: removed tokens.
    tgt_slot:   (b, r, k) int64 index into the kept list, or None (drop).
    tgt_weight: (b, r, k) float, rows sum to 1 (zeros for unused slots), or None.
    fuse_weight:(b, r) float or None: EViT-style, all sources are averaged into one new
                token appended after the kept ones (weights need not be normalised).
    """

    keep_idx: torch.Tensor
    src_idx: torch.Tensor
    tgt_slot: torch.Tensor | None = None
    tgt_weight: torch.Tensor | None = None
    fuse_weight: torch.Tensor | None = None

    @property
    def tokens_out(self) -> int:
        return self.keep_idx.shape[1] + (1 if self.fuse_weight is not None else 0)


def gather_tokens(t: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """t: (b, n, *rest), idx: (b, m) -> (b, m, *rest)."""
    view = idx.reshape(idx.shape + (1,) * (t.dim() - 2))
    return torch.gather(t, 1, view.expand(idx.shape + t.shape[2:]))


def drop(x: torch.Tensor, size: torch.Tensor, plan: Plan) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep plan.keep_idx, discard the sources. x: (b, n, c), size: (b, n, 1)."""
    return gather_tokens(x, plan.keep_idx), gather_tokens(size, plan.keep_idx)


def merge(x: torch.Tensor, size: torch.Tensor, plan: Plan) -> tuple[torch.Tensor, torch.Tensor]:
    """Size-weighted average of each source into its targets.

    A source s with size m_s gives mass w_st * m_s to target t; the target becomes
    (m_t x_t + sum_s w_st m_s x_s) / (m_t + sum_s w_st m_s) and its size that denominator.
    x: (b, n, c), size: (b, n, 1) -> (b, n_keep, c), (b, n_keep, 1).
    """
    kept_x, kept_size = drop(x, size, plan)
    mass = plan.tgt_weight.to(x.dtype) * gather_tokens(size, plan.src_idx)  # (b, r, k)
    sends = mass_matrix(plan.tgt_slot, mass, kept_x.shape[1])  # (b, n_keep, r)
    denom = kept_size + sends.sum(-1, keepdim=True)
    return (kept_x * kept_size + sends @ gather_tokens(x, plan.src_idx)) / denom, denom


def mass_matrix(slot: torch.Tensor, mass: torch.Tensor, n_keep: int) -> torch.Tensor:
    """slot, mass: (b, r, k) -> (b, n_keep, r): entry [t, s] is the mass source s gives kept token t.
    A matrix product with this replaces a scatter-add, which TensorRT takes only with no more
    indices than outputs (r * k <= n_keep), and small budgets break that."""
    hits = slot.unsqueeze(-1) == torch.arange(n_keep, device=slot.device)  # (b, r, k, n_keep)
    return (hits.to(mass.dtype) * mass.unsqueeze(-1)).sum(2).transpose(1, 2)


def fuse(x: torch.Tensor, size: torch.Tensor, plan: Plan) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep plan.keep_idx and append one token: the weighted average of all sources.

    x: (b, n, c), size: (b, n, 1) -> (b, n_keep + 1, c), (b, n_keep + 1, 1).
    """
    kept_x, kept_size = drop(x, size, plan)
    src_size = gather_tokens(size, plan.src_idx)  # (b, r, 1)
    mass = plan.fuse_weight.to(x.dtype).unsqueeze(-1) * src_size
    fused = (gather_tokens(x, plan.src_idx) * mass).sum(1, keepdim=True) / mass.sum(1, keepdim=True)
    return torch.cat([kept_x, fused], 1), torch.cat([kept_size, src_size.sum(1, keepdim=True)], 1)


def apply_plan(x: torch.Tensor, size: torch.Tensor, plan: Plan) -> tuple[torch.Tensor, torch.Tensor]:
    """Dispatch on what the plan carries: fuse, merge or drop."""
    if plan.fuse_weight is not None:
        return fuse(x, size, plan)
    if plan.tgt_slot is not None:
        return merge(x, size, plan)
    return drop(x, size, plan)
