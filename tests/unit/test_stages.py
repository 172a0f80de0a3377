"""Filter / correlate / compress stages against plain loop references.

Every fast (vectorised, static-shape) stage is compared with a reference written with explicit
Python loops over batch, tokens and windows (tests/stage_refs.py, shared with
test_methods_vs_direct.py). The key test is fixed-K vs adaptive:
`correlate.quantile_targets` (fixed K = quantile_k slots, zero weight under the threshold)
must give the same per-source {target: weight} maps as FiCoCo's data-dependent rule.
"""

from __future__ import annotations

import math

import pytest
import torch

from ficoco_edge.reduction import compress, correlate, filter as filt
from ficoco_edge.reduction.compress import Plan
from tests.stage_refs import (assert_maps_equal, plan_maps, random_split, ref_adaptive_targets,
                              ref_ficoco_v_redundancy, ref_local_penalty, ref_merge, ref_split, ref_window_id)

# ------------------------------------------------------------------ 1. compress


def _sizes(gen, b, n, dtype=torch.float64):
    return (1 + 4 * torch.rand(b, n, 1, generator=gen, dtype=dtype)).round()  # integers 1..5


def test_gather_tokens_matches_loop():
    gen = torch.Generator().manual_seed(1)
    b, n, m = 3, 11, 5
    idx = torch.stack([torch.randperm(n, generator=gen)[:m] for _ in range(b)])
    for t in (torch.randn(b, n, generator=gen), torch.randn(b, n, 4, 2, generator=gen)):
        got = compress.gather_tokens(t, idx)
        assert got.shape == (b, m) + t.shape[2:]
        for bi in range(b):
            for j in range(m):
                assert torch.equal(got[bi, j], t[bi, int(idx[bi, j])])


def test_drop_matches_loop():
    gen = torch.Generator().manual_seed(2)
    b, n, r, c = 3, 13, 5, 4
    x, size = torch.randn(b, n, c, generator=gen, dtype=torch.float64), _sizes(gen, b, n)
    src, keep = random_split(gen, b, n, r)
    got_x, got_s = compress.drop(x, size, Plan(keep, src))
    for bi in range(b):
        for j, t in enumerate(keep[bi].tolist()):
            assert torch.equal(got_x[bi, j], x[bi, t])
            assert torch.equal(got_s[bi, j], size[bi, t])
    assert torch.equal(compress.apply_plan(x, size, Plan(keep, src))[0], got_x)


def test_merge_matches_loop_with_multi_targets_and_zero_slots():
    gen = torch.Generator().manual_seed(3)
    b, n, r, k, c = 3, 17, 6, 3, 5
    x, size = torch.randn(b, n, c, generator=gen, dtype=torch.float64), _sizes(gen, b, n)
    src, keep = random_split(gen, b, n, r)
    # Random slots (duplicates allowed: scatter-add must sum them), some weights zeroed.
    slot = torch.randint(0, n - r, (b, r, k), generator=gen)
    w = torch.rand(b, r, k, generator=gen, dtype=torch.float64)
    w = w * (torch.rand(b, r, k, generator=gen) > 0.4)
    w[..., 0] += 0.1  # every source has at least one non-zero slot
    w = w / w.sum(-1, keepdim=True)
    assert (w == 0).any(), "test needs zero-weight slots"
    plan = Plan(keep, src, slot, w)
    got_x, got_s = compress.merge(x, size, plan)
    want_x, want_s = ref_merge(x, size, keep, src, plan_maps(slot, w, keep))
    torch.testing.assert_close(got_x, want_x, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got_s, want_s, rtol=1e-12, atol=1e-12)
    # Mass is conserved: sizes add up to the input total.
    torch.testing.assert_close(got_s.sum((1, 2)), size.sum((1, 2)))
    torch.testing.assert_close(compress.apply_plan(x, size, plan)[0], got_x)


def test_fuse_matches_loop():
    gen = torch.Generator().manual_seed(4)
    b, n, r, c = 3, 15, 6, 4
    x, size = torch.randn(b, n, c, generator=gen, dtype=torch.float64), _sizes(gen, b, n)
    src, keep = random_split(gen, b, n, r)
    a = torch.rand(b, r, generator=gen, dtype=torch.float64)
    plan = Plan(keep, src, fuse_weight=a)
    got_x, got_s = compress.fuse(x, size, plan)
    assert got_x.shape == (b, n - r + 1, c) and plan.tokens_out == n - r + 1
    for bi in range(b):
        for j, t in enumerate(keep[bi].tolist()):
            assert torch.equal(got_x[bi, j], x[bi, t])
            assert torch.equal(got_s[bi, j], size[bi, t])
        numer, denom, total = torch.zeros(c, dtype=x.dtype), 0.0, 0.0
        for si, s in enumerate(src[bi].tolist()):
            mass = float(a[bi, si]) * float(size[bi, s, 0])
            numer = numer + mass * x[bi, s]
            denom += mass
            total += float(size[bi, s, 0])
        torch.testing.assert_close(got_x[bi, -1], numer / denom, rtol=1e-12, atol=1e-12)
        assert math.isclose(float(got_s[bi, -1, 0]), total)
    torch.testing.assert_close(compress.apply_plan(x, size, plan)[0], got_x)


# ------------------------------------------------------------------ 2. filter


@pytest.mark.parametrize("n,r", [(10, 1), (37, 12), (100, 99)])
def test_split_matches_loop(n, r):
    gen = torch.Generator().manual_seed(n + r)
    red = torch.randn(3, n, generator=gen, dtype=torch.float64)
    src, keep = filt.split(red, r)
    want_src, want_keep = ref_split(red, r)
    assert src.shape == (3, r) and keep.shape == (3, n - r)
    for bi in range(3):
        assert set(src[bi].tolist()) == want_src[bi]
        assert keep[bi].tolist() == want_keep[bi]


def test_split_with_minus_inf_rows():
    """ToMe marks set-B tokens -inf; they must never be chosen while finite ones remain."""
    gen = torch.Generator().manual_seed(5)
    red = torch.randn(2, 12, generator=gen)
    red[:, 1::2] = float("-inf")
    src, keep = filt.split(red, 6)
    want_src, want_keep = ref_split(red, 6)
    for bi in range(2):
        assert set(src[bi].tolist()) == want_src[bi] == set(range(0, 12, 2))
        assert keep[bi].tolist() == want_keep[bi]


@pytest.mark.parametrize("grid_side,window", [(24, 2), (7, 2), (9, 3)])
def test_window_ids_matches_loop(grid_side, window):
    cells = torch.arange(grid_side * grid_side).expand(2, -1)
    got = filt.window_ids(cells, grid_side, window)
    for bi in range(2):
        for cell in range(grid_side * grid_side):
            assert int(got[bi, cell]) == ref_window_id(cell, grid_side, window)
    n_windows = math.ceil(grid_side / window) ** 2
    assert set(got[0].tolist()) == set(range(n_windows))
    if (grid_side, window) == (24, 2):
        assert n_windows == 144 and torch.bincount(got[0]).tolist() == [4] * 144


def test_local_penalty_matches_loop():
    gen = torch.Generator().manual_seed(6)
    b, n, n_windows, scale = 3, 40, 15, 2.0
    score = torch.randn(b, n, generator=gen, dtype=torch.float64)
    score[0, :8] = score[0, :8].abs()  # windows whose minimum is positive
    win = torch.randint(0, n_windows - 3, (b, n), generator=gen)  # the last 3 windows are empty
    win[0, :8] = n_windows - 3  # window 12 in sample 0 holds only positive scores
    got = filt.local_penalty(score, win, n_windows, scale)
    want = ref_local_penalty(score, win, n_windows, scale)
    assert torch.equal(got, want)
    assert (got != score).sum() > 0 and (got == score).sum() > 0


@pytest.mark.parametrize("n_cells", [576, 300])
def test_ficoco_v_redundancy_matches_loop(n_cells):
    gen = torch.Generator().manual_seed(n_cells)
    b, grid_side = 2, 24
    # A full grid, or the surviving cells after an earlier reduction (ascending, random subset).
    grid_pos = torch.stack([torch.randperm(576, generator=gen)[:n_cells].sort().values for _ in range(b)])
    logits = torch.randn(b, 1 + n_cells, 1 + n_cells, generator=gen, dtype=torch.float64)
    logits[:, 1:, 1:] += 0.3 * torch.randn(b, n_cells, 1, generator=gen, dtype=torch.float64)  # vary row means
    args = (grid_side, 0.35, 2, 2.0)
    got = filt.ficoco_v_redundancy(logits, grid_pos, *args)
    want = ref_ficoco_v_redundancy(logits, grid_pos, *args)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


def test_ficoco_l_redundancy_with_text_mask():
    gen = torch.Generator().manual_seed(7)
    b, n, t, g = 3, 9, 6, 0.6
    vv = torch.randn(b, n, n, generator=gen, dtype=torch.float64)
    tv = torch.randn(b, t, n, generator=gen, dtype=torch.float64)
    text_valid = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0], [0, 0, 0, 0, 0, 0]], dtype=torch.bool)
    got = filt.ficoco_l_redundancy(vv, tv, text_valid, g)
    for bi in range(b):
        valid = [ti for ti in range(t) if text_valid[bi, ti]]
        for j in range(n):
            rel = sum(float(tv[bi, ti, j]) for ti in valid) / len(valid) if valid else 0.0
            want = g * sum(float(v) for v in vv[bi, j]) - (1 - g) * rel
            assert math.isclose(float(got[bi, j]), want, rel_tol=1e-12, abs_tol=1e-12), (bi, j)


# ------------------------------------------------------------------ 3. fixed-K vs adaptive


# Every (n, eps, exclude_self); each n and each eps sees both float32 and float64.
QUANTILE_CASES = [
    (n, eps, excl, torch.float64 if excl == (eps == 0.9) else torch.float32)
    for n in (16, 100, 577, 600)
    for eps in (0.998, 0.9)
    for excl in (False, True)
]


@pytest.mark.parametrize("n,eps,exclude_self,dtype", QUANTILE_CASES)
def test_quantile_targets_equal_adaptive_rule(n, eps, exclude_self, dtype):
    gen = torch.Generator().manual_seed(1000 * n + int(eps * 1000) + 7 * exclude_self + (dtype == torch.float64))
    b, c = 2, 3
    counts, fallbacks, multi = [], 0, 0
    for trial, r in enumerate((max(1, n // 8), n // 3, n - 2)):
        rows = (3 * torch.randn(b, n, n, generator=gen, dtype=torch.float64)).to(dtype)
        if trial == 2:  # column structure: some tokens high in every row; few kept tokens
            rows = rows + 4 * torch.randn(b, 1, n, generator=gen, dtype=torch.float64).to(dtype)
        src, keep = random_split(gen, b, n, r)
        slot, weight = correlate.quantile_targets(rows, src, keep, eps, exclude_self=exclude_self)
        k = correlate.quantile_k(n, eps, n - r)
        assert slot.shape == weight.shape == (b, r, k)
        # Slots are distinct kept positions; weights are a distribution.
        for bi in range(b):
            for si in range(r):
                assert len(set(slot[bi, si].tolist())) == k
        torch.testing.assert_close(weight.sum(-1), torch.ones(b, r, dtype=weight.dtype))

        fell_back: list[bool] = []
        want = ref_adaptive_targets(rows, src, keep, eps, exclude_self, fell_back)
        got = plan_maps(slot, weight, keep)
        assert_maps_equal(got, want, rtol=1e-5 if dtype == torch.float32 else 1e-10)

        sizes = [len(m) for per in want for m in per]
        counts += sizes
        fallbacks += sum(fell_back)
        multi += sum(1 for s in sizes if s > 1)
        assert max(sizes) <= k, f"adaptive count {max(sizes)} exceeds quantile_k {k}"

        # Merging with the fixed-K targets equals merging with the adaptive ones.
        x = torch.randn(b, n, c, generator=gen, dtype=torch.float64).to(dtype)
        size = _sizes(gen, b, n, dtype)
        got_x, got_s = compress.merge(x, size, Plan(keep, src, slot, weight))
        want_x, want_s = ref_merge(x, size, keep, src, want)
        tol = dict(rtol=2e-5, atol=2e-5) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(got_x.double(), want_x, **tol)
        torch.testing.assert_close(got_s.double(), want_s, **tol)

    assert max(counts) <= correlate.quantile_k(n, eps, n)
    # Both branches of the rule were exercised where the row length allows them.
    assert fallbacks > 0
    if correlate.quantile_k(n, eps, n) >= 3:  # at most quantile_k - 1 entries exceed the quantile
        assert multi > 0, "no source had more than one target"
    if eps == 0.9 and n >= 100:
        assert len(set(counts)) > 2, "adaptive count should vary per row"


@pytest.mark.parametrize("n", [16, 17, 100, 101, 577, 600])
@pytest.mark.parametrize("eps", [0.5, 0.9, 0.99, 0.998])
def test_quantile_k_bounds_count_above_quantile(n, eps):
    """quantile_k(n, eps, n) bounds how many entries of any row exceed the row's eps-quantile."""
    gen = torch.Generator().manual_seed(n)
    k = correlate.quantile_k(n, eps, n)
    assert 1 <= k <= n
    assert correlate.quantile_k(n, eps, 3) <= 3
    for dtype in (torch.float32, torch.float64):
        for row in torch.randn(8, n, generator=gen, dtype=torch.float64).to(dtype):
            threshold = float(torch.quantile(row, eps))
            assert sum(1 for v in row.tolist() if v > threshold) <= k


def test_quantile_targets_float64_exact_rank():
    """When eps * (n - 1) is an integer the eps-quantile IS a row entry; that entry is not
    strictly above it and must not become a target. Exercised in float64 (the threshold must be
    computed in the rows' own precision)."""
    gen = torch.Generator().manual_seed(8)
    b, n, r, eps = 3, 17, 5, 0.5  # rank 0.5 * 16 = 8 exactly: the threshold is the median entry
    rows = torch.randn(b, n, n, generator=gen, dtype=torch.float64)
    src, keep = random_split(gen, b, n, r)
    slot, weight = correlate.quantile_targets(rows, src, keep, eps)
    assert_maps_equal(plan_maps(slot, weight, keep), ref_adaptive_targets(rows, src, keep, eps), rtol=1e-10)
