"""Filter stage: score every candidate token's redundancy and pick the r to remove.

Each scorer returns `redundancy` (b, n): the r highest are removed. `split` turns that into
source indices and kept indices in original order (static shapes: TopK with Python-int k).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def split(redundancy: torch.Tensor, r: int) -> tuple[torch.Tensor, torch.Tensor]:
    """redundancy: (b, n) -> src_idx (b, r), keep_idx (b, n - r) ascending."""
    b, n = redundancy.shape
    src_idx = redundancy.topk(r, dim=-1).indices
    removed = torch.zeros_like(redundancy, dtype=torch.long).scatter(1, src_idx, 1)
    order_key = torch.arange(n, device=redundancy.device).expand(b, n) + n * removed
    keep_idx = order_key.topk(n - r, dim=-1, largest=False, sorted=True).indices
    return src_idx, keep_idx


def window_ids(grid_pos: torch.Tensor, grid_side: int, window: int) -> torch.Tensor:
    """Original grid cell (row-major index) -> id of its window x window block. (b, n) -> (b, n)."""
    row, col = grid_pos // grid_side, grid_pos % grid_side
    blocks_per_row = -(-grid_side // window)
    return (row // window) * blocks_per_row + col // window


def window_minimum(score: torch.Tensor, win: torch.Tensor, n_windows: int) -> torch.Tensor:
    """score, win: (b, n) -> (b, n_windows): each window's lowest score (inf for an empty window).
    A one-hot comparison rather than a scatter with a min reduction, which TensorRT 8's parser
    refuses; (b, n, n_windows) is small (576 x 144 on LLaVA-1.5)."""
    member = win.unsqueeze(-1) == torch.arange(n_windows, device=win.device)
    inf = torch.tensor(float("inf"), dtype=score.dtype, device=score.device)
    return torch.where(member, score.unsqueeze(-1), inf).amin(1)


def local_penalty(score: torch.Tensor, win: torch.Tensor, n_windows: int, scale: float) -> torch.Tensor:
    """Push each window's lowest-scoring token further towards removal.

    score: (b, n) where LOW means redundant; win: (b, n) window ids. The window minimum is
    divided by `scale` if positive, multiplied by it if not (the official rule), so every
    window gives up its most redundant token before any window gives up two.
    """
    is_min = score == window_minimum(score, win, n_windows).gather(1, win)
    penalised = torch.where(score > 0, score / scale, score * scale)
    return torch.where(is_min, penalised, score)


def ficoco_v_redundancy(
    logits: torch.Tensor,
    grid_pos: torch.Tensor,
    grid_side: int,
    beta: float,
    window: int,
    penalty_scale: float,
) -> torch.Tensor:
    """FiCoCo-V: low [CLS] relevance and high patch-to-patch similarity mean redundant.

    logits: (b, 1 + n, 1 + n) head-mean scaled q.k with [CLS] at 0; grid_pos: (b, n) original
    cells of the n patches. Returns (b, n).
    """
    task = F.normalize(logits[:, 0, 1:], dim=-1)
    local = F.normalize(logits[:, 1:, 1:].mean(-1), dim=-1)
    score = beta * task - (1 - beta) * local
    n_windows = (-(-grid_side // window)) ** 2
    score = local_penalty(score, window_ids(grid_pos, grid_side, window), n_windows, penalty_scale)
    return -score


def ficoco_l_redundancy(vv: torch.Tensor, tv: torch.Tensor, text_valid: torch.Tensor, g: float) -> torch.Tensor:
    """FiCoCo-L: vision tokens similar to many vision tokens and little attended by text go.

    vv: (b, n, n) head-mean logits vision->vision; tv: (b, t, n) text queries -> vision keys;
    text_valid: (b, t) bool. Returns (b, n).
    """
    w = text_valid.to(tv.dtype).unsqueeze(-1)
    relevance = (tv * w).sum(1) / w.sum(1).clamp(min=1)
    return g * vv.sum(-1) - (1 - g) * relevance


def bipartite_redundancy(keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """ToMe: split tokens alternately into sets A (even) and B (odd); an A token is as redundant
    as its best cosine match in B. B tokens are never removed (redundancy -inf).

    keys: (b, n, d) -> redundancy (b, n), best_b (b, n) index into the full list of the best B match.
    """
    k = F.normalize(keys, dim=-1)
    a, bset = k[:, 0::2], k[:, 1::2]
    node_max, node_idx = (a @ bset.transpose(1, 2)).max(-1)
    b, n, _ = keys.shape
    redundancy = torch.full((b, n), float("-inf"), dtype=keys.dtype, device=keys.device)
    redundancy[:, 0::2] = node_max
    best_b = torch.zeros((b, n), dtype=torch.long, device=keys.device)
    best_b[:, 0::2] = node_idx * 2 + 1
    return redundancy, best_b


def cls_attention_redundancy(cls_probs: torch.Tensor) -> torch.Tensor:
    """EViT: tokens the [CLS] query attends to least are inattentive. (b, n) -> (b, n)."""
    return -cls_probs


def attention_received_redundancy(received: torch.Tensor) -> torch.Tensor:
    """FastV: image tokens receiving the least attention go. (b, n) -> (b, n)."""
    return -received


def random_redundancy(like: torch.Tensor) -> torch.Tensor:
    """Uniform random scores: the accuracy floor at a given schedule. (b, n) -> (b, n)."""
    return torch.rand_like(like)
