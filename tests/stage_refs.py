"""Plain-loop references for the filter / correlate / compress stages: explicit Python loops over
batch, tokens and windows, which tests/unit/test_stages.py and test_methods_vs_direct.py compare
the vectorised stages with."""

from __future__ import annotations

import math

import torch

from ficoco_edge.reduction.compress import Plan

def random_split(gen: torch.Generator, b: int, n: int, r: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample random sources (r) and kept tokens (n - r, ascending)."""
    src, keep = [], []
    for _ in range(b):
        perm = torch.randperm(n, generator=gen)
        src.append(perm[:r])
        keep.append(perm[r:].sort().values)
    return torch.stack(src), torch.stack(keep)


def ref_merge(x, size, keep_idx, src_idx, maps):
    """maps[bi][si] = {full-list target token: weight}. Each kept token t becomes
    (m_t x_t + sum_s w_st m_s x_s) / (m_t + sum_s w_st m_s), its size that denominator.
    Plain Python floats (double precision); returns float64 tensors."""
    out_x, out_s = [], []
    for bi in range(x.shape[0]):
        xs, ms = x[bi].tolist(), [v[0] for v in size[bi].tolist()]
        keep = [int(t) for t in keep_idx[bi]]
        numer = {t: [ms[t] * v for v in xs[t]] for t in keep}
        denom = {t: ms[t] for t in keep}
        for si, s in enumerate(int(s) for s in src_idx[bi]):
            for t, w in maps[bi][si].items():
                numer[t] = [a + w * ms[s] * v for a, v in zip(numer[t], xs[s])]
                denom[t] += w * ms[s]
        out_x.append([[a / denom[t] for a in numer[t]] for t in keep])
        out_s.append([[denom[t]] for t in keep])
    return torch.tensor(out_x, dtype=torch.float64), torch.tensor(out_s, dtype=torch.float64)


def ref_split(redundancy, r):
    """Sources: the r highest; keep: the others in ascending order. Returns lists per sample."""
    srcs, keeps = [], []
    for row in redundancy.tolist():
        order = sorted(range(len(row)), key=lambda i: row[i], reverse=True)
        srcs.append(set(order[:r]))
        keeps.append([i for i in range(len(row)) if i not in srcs[-1]])
    return srcs, keeps


def ref_window_id(cell: int, grid_side: int, window: int) -> int:
    row, col = divmod(cell, grid_side)
    blocks_per_row = math.ceil(grid_side / window)
    return (row // window) * blocks_per_row + col // window


def ref_local_penalty(score, win, n_windows, scale):
    """Per sample, per window: the minimum over the tokens present is divided by scale if
    positive, multiplied by it otherwise; other tokens unchanged."""
    out = score.clone()
    for bi in range(score.shape[0]):
        vals = score[bi].tolist()
        ids = win[bi].tolist()
        for w in range(n_windows):
            members = [i for i in range(len(vals)) if ids[i] == w]
            if not members:
                continue
            low = min(vals[i] for i in members)
            for i in members:
                if vals[i] == low:
                    out[bi, i] = low / scale if low > 0 else low * scale
    return out


def ref_ficoco_v_redundancy(logits, grid_pos, grid_side, beta, window, scale):
    """-(penalty(beta * l2norm([CLS] row over patches) - (1 - beta) * l2norm(patch-row means)))."""
    b, n1, _ = logits.shape
    n = n1 - 1
    score = torch.empty(b, n, dtype=logits.dtype)
    for bi in range(b):
        lg = logits[bi].tolist()
        task = [lg[0][1 + j] for j in range(n)]
        local = [sum(lg[1 + j][1:]) / n for j in range(n)]
        task_norm = math.sqrt(sum(v * v for v in task))
        local_norm = math.sqrt(sum(v * v for v in local))
        for j in range(n):
            score[bi, j] = beta * task[j] / task_norm - (1 - beta) * local[j] / local_norm
    n_windows = math.ceil(grid_side / window) ** 2
    win = torch.tensor([[ref_window_id(int(c), grid_side, window) for c in row] for row in grid_pos])
    return -ref_local_penalty(score, win, n_windows, scale)


def ref_adaptive_row(row, s, keep, eps, exclude_self=False):
    """FiCoCo's data-dependent correlate for source s with correlation row `row` (n,).

    threshold = eps-quantile of the whole row (own entry -inf when exclude_self);
    targets = kept tokens strictly above it, or the single best kept token if none;
    weights = softmax of the targets' values. Returns ({token: weight}, fell_back).
    """
    row = row.clone()
    if exclude_self:
        row[s] = float("-inf")
    threshold = float(torch.quantile(row, eps))
    vals = row.tolist()
    cand = [t for t in keep if vals[t] > threshold]
    fell_back = not cand
    if fell_back:
        cand = [max(keep, key=lambda t: vals[t])]
    top = max(vals[t] for t in cand)
    e = {t: math.exp(vals[t] - top) for t in cand}
    total = sum(e.values())
    return {t: v / total for t, v in e.items()}, fell_back


def ref_adaptive_targets(rows, src_idx, keep_idx, eps, exclude_self=False, fallbacks=None):
    """maps[bi][si] = {token: weight} of ref_adaptive_row for every sample and source.
    If `fallbacks` is a list, one bool per source (no kept token above threshold) is appended."""
    maps = []
    for bi in range(rows.shape[0]):
        keep = [int(t) for t in keep_idx[bi]]
        per_src = []
        for s in (int(s) for s in src_idx[bi]):
            m, fell_back = ref_adaptive_row(rows[bi, s], s, keep, eps, exclude_self)
            per_src.append(m)
            if fallbacks is not None:
                fallbacks.append(fell_back)
        maps.append(per_src)
    return maps


def plan_maps(tgt_slot, tgt_weight, keep_idx):
    """Library targets -> maps[bi][si] = {token: weight}, zero weights dropped, duplicates summed."""
    maps = []
    for bi in range(tgt_slot.shape[0]):
        keep = keep_idx[bi].tolist()
        per_src = []
        for slots, weights in zip(tgt_slot[bi].tolist(), tgt_weight[bi].tolist()):
            m: dict[int, float] = {}
            for slot, w in zip(slots, weights):
                if w != 0.0:
                    t = keep[slot]
                    m[t] = m.get(t, 0.0) + w
            per_src.append(m)
        maps.append(per_src)
    return maps


def assert_maps_equal(got, want, rtol):
    for bi, (g_b, w_b) in enumerate(zip(got, want)):
        for si, (g, w) in enumerate(zip(g_b, w_b)):
            assert set(g) == set(w), f"sample {bi} source {si}: targets {sorted(g)} != {sorted(w)}"
            for t in w:
                assert math.isclose(g[t], w[t], rel_tol=rtol, abs_tol=1e-12), (bi, si, t, g[t], w[t])
