"""Table 1 of arXiv 2411.17686: the filter/correlate/compress decomposition expresses the
classic methods. Each method as run through `methods` / `correlate` / `compress` is compared
with a direct, loop-based implementation written here from the method's own description.
"""

from __future__ import annotations

import math

import pytest
import torch

from ficoco_edge.reduction import compress, correlate
from ficoco_edge.reduction.compress import Plan
from ficoco_edge.reduction.methods import plan_llm_step, plan_vision_step
from ficoco_edge.reduction.registry import METHODS, FicocoParams
from ficoco_edge.reduction.scores import LLMScores, VisionScores

from tests.stage_refs import ref_adaptive_targets, ref_ficoco_v_redundancy, ref_merge, ref_split

F64 = torch.float64


def _dot(u, v):
    return sum(a * b for a, b in zip(u, v))


def _softmax(vals):
    top = max(vals)
    e = [math.exp(v - top) for v in vals]
    total = sum(e)
    return [v / total for v in e]


def _sizes(gen, b, n):
    return (1 + 4 * torch.rand(b, n, 1, generator=gen, dtype=F64)).round()


# ------------------------------------------------------------------ ToMe


def direct_tome_round(x, keys, size, ids, r):
    """One round of ToMe bipartite soft matching, per sample with Python loops.

    A = even tokens, B = odd tokens; each A token's best B match by cosine similarity of keys;
    the r A tokens with the highest best-match similarity merge into their match by
    size-weighted average (x and keys alike); kept tokens stay in original order.
    x, keys: lists (per sample) of lists of vectors; size: lists of floats; ids: original indices.
    """
    out = ([], [], [], [])
    for xs, ks, ms, idl in zip(x, keys, size, ids):
        n = len(xs)
        a_set, b_set = list(range(0, n, 2)), list(range(1, n, 2))
        norm = [math.sqrt(_dot(k, k)) for k in ks]
        best, best_sim = {}, {}
        for a in a_set:
            sims = {bb: _dot(ks[a], ks[bb]) / (norm[a] * norm[bb]) for bb in b_set}
            best[a] = max(b_set, key=lambda bb: sims[bb])
            best_sim[a] = sims[best[a]]
        merged = set(sorted(a_set, key=lambda a: best_sim[a], reverse=True)[:r])
        kept = [t for t in range(n) if t not in merged]
        nx = {t: [ms[t] * v for v in xs[t]] for t in kept}
        nk = {t: [ms[t] * v for v in ks[t]] for t in kept}
        den = {t: ms[t] for t in kept}
        for a in merged:
            t = best[a]
            nx[t] = [u + ms[a] * v for u, v in zip(nx[t], xs[a])]
            nk[t] = [u + ms[a] * v for u, v in zip(nk[t], ks[a])]
            den[t] += ms[a]
        out[0].append([[v / den[t] for v in nx[t]] for t in kept])
        out[1].append([[v / den[t] for v in nk[t]] for t in kept])
        out[2].append([den[t] for t in kept])
        out[3].append([idl[t] for t in kept])
    return out


def direct_tome(x, keys, size, r):
    """ToMe removing r tokens: rounds of at most ceil(n/2) merges, each re-matching on the
    merged keys. Returns x (b, n-r, c), size (b, n-r, 1), kept original ids (lists)."""
    xs, ks = x.tolist(), keys.tolist()
    ms = [[v[0] for v in row] for row in size.tolist()]
    ids = [list(range(x.shape[1])) for _ in range(x.shape[0])]
    while r > 0:
        step = min(r, (len(xs[0]) + 1) // 2)
        xs, ks, ms, ids = direct_tome_round(xs, ks, ms, ids, step)
        r -= step
    return torch.tensor(xs, dtype=F64), torch.tensor(ms, dtype=F64).unsqueeze(-1), ids


@pytest.mark.parametrize(
    "n,r",
    [(16, 5), (16, 8), (17, 9), (50, 20)]  # one round (r <= ceil(n/2))
    + [(16, 12), (17, 15), (50, 40), (31, 30)],  # several rounds
)
def test_tome_bipartite_rounds_equal_direct(n, r):
    gen = torch.Generator().manual_seed(100 * n + r)
    b, c, d = 3, 5, 6
    x = torch.randn(b, n, c, generator=gen, dtype=F64)
    keys = torch.randn(b, n, d, generator=gen, dtype=F64)
    size = _sizes(gen, b, n)  # non-uniform: later rounds must weight merged keys by size
    keep, src, slot, weight = correlate.bipartite_rounds(keys, size, r)
    got_x, got_s = compress.merge(x, size, Plan(keep, src, slot, weight))
    want_x, want_s, want_ids = direct_tome(x, keys, size, r)
    assert keep.tolist() == want_ids
    for bi in range(b):
        assert sorted(src[bi].tolist()) == sorted(set(range(n)) - set(want_ids[bi]))
    torch.testing.assert_close(got_x, want_x, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(got_s, want_s, rtol=1e-12, atol=1e-12)


def test_tome_method_uses_head_mean_patch_keys():
    """METHODS['tome'] through plan_vision_step: ToMe's metric is the head-mean key of each patch."""
    gen = torch.Generator().manual_seed(11)
    b, heads, n, d, c, r = 2, 3, 24, 4, 5, 15
    q = torch.randn(b, heads, 1 + n, d, generator=gen, dtype=F64)
    k = torch.randn(b, heads, 1 + n, d, generator=gen, dtype=F64)
    x, size = torch.randn(b, n, c, generator=gen, dtype=F64), _sizes(gen, b, n)
    grid_pos = torch.arange(n).expand(b, n)
    plan = plan_vision_step(METHODS["tome"].vision, VisionScores(q, k, 0.5), grid_pos, 5, r, FicocoParams(), size)
    got_x, got_s = compress.apply_plan(x, size, plan)
    keys = torch.tensor(
        [[[sum(float(k[bi, h, 1 + j, e]) for h in range(heads)) / heads for e in range(d)] for j in range(n)] for bi in range(b)],
        dtype=F64,
    )
    want_x, want_s, want_ids = direct_tome(x, keys, size, r)
    assert plan.keep_idx.tolist() == want_ids
    torch.testing.assert_close(got_x, want_x, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(got_s, want_s, rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------ EViT


def direct_cls_attention(q, k, scale):
    """Per head: softmax over all keys of the [CLS] query; mean over heads; patches only."""
    b, heads, n1, _ = q.shape
    out = []
    for bi in range(b):
        att = [0.0] * n1
        for h in range(heads):
            qc, ks = q[bi, h, 0].tolist(), k[bi, h].tolist()
            probs = _softmax([_dot(qc, kj) * scale for kj in ks])
            att = [a + p / heads for a, p in zip(att, probs)]
        out.append(att[1:])
    return out


@pytest.mark.parametrize("n,r", [(20, 6), (49, 30), (16, 0)])
def test_evit_equals_direct(n, r):
    gen = torch.Generator().manual_seed(200 + n + r)
    b, heads, d, c, scale = 3, 4, 8, 5, 8**-0.5
    q = 2 * torch.randn(b, heads, 1 + n, d, generator=gen, dtype=F64)
    k = 2 * torch.randn(b, heads, 1 + n, d, generator=gen, dtype=F64)
    x = torch.randn(b, n, c, generator=gen, dtype=F64)
    size = torch.ones(b, n, 1, dtype=F64)
    grid_pos = torch.arange(n).expand(b, n)
    plan = plan_vision_step(METHODS["evit"].vision, VisionScores(q, k, scale), grid_pos, 7, r, FicocoParams())
    got_x, got_s = compress.apply_plan(x, size, plan)
    assert got_x.shape == (b, n - r, c) and plan.tokens_out == n - r

    att = direct_cls_attention(q, k, scale)
    for bi in range(b):
        ranked = sorted(range(n), key=lambda j: att[bi][j], reverse=True)
        keep = sorted(ranked[: n - r - 1])
        fused = ranked[n - r - 1 :]
        assert plan.keep_idx[bi].tolist() == keep
        assert sorted(plan.src_idx[bi].tolist()) == sorted(fused)
        for j, t in enumerate(keep):
            assert torch.equal(got_x[bi, j], x[bi, t])
        total = sum(att[bi][s] for s in fused)
        want_fused = [sum(att[bi][s] * float(x[bi, s, ch]) for s in fused) / total for ch in range(c)]
        torch.testing.assert_close(got_x[bi, -1], torch.tensor(want_fused, dtype=F64), rtol=1e-10, atol=1e-12)
        assert got_s[bi, :-1].eq(1).all() and float(got_s[bi, -1, 0]) == len(fused)


# ------------------------------------------------------------------ FastV


def _llm_inputs(gen, b=3, heads=4, seq=30, n=12, d=8):
    q = 2 * torch.randn(b, heads, seq, d, generator=gen, dtype=F64)
    k = 2 * torch.randn(b, heads, seq, d, generator=gen, dtype=F64)
    key_valid = torch.ones(b, seq, dtype=torch.bool)
    key_valid[1, :3] = False  # left padding
    key_valid[2, seq - 4 :] = False  # right padding
    start = torch.tensor([2, 5, 1])
    span_idx = start.unsqueeze(1) + torch.arange(n)
    t = seq - int(start.max()) - n
    text_idx = (start + n).unsqueeze(1) + torch.arange(t)
    text_valid = key_valid.gather(1, text_idx)
    text_valid[0, t - 2 :] = False  # a text slot that is not real text
    return q, k, span_idx, text_idx, text_valid, key_valid


def direct_received(q, k, scale, key_valid, span_idx):
    """Causal softmax attention of the last real query row per head, padded keys masked; the
    mean over heads that each image token receives."""
    b, heads, seq, _ = q.shape
    out = []
    for bi in range(b):
        last = max(i for i in range(seq) if key_valid[bi, i])
        cols = [j for j in range(last + 1) if key_valid[bi, j]]
        recv = [0.0] * seq
        for h in range(heads):
            ql, ks = q[bi, h, last].tolist(), k[bi, h].tolist()
            for j, p in zip(cols, _softmax([_dot(ql, ks[j]) * scale for j in cols])):
                recv[j] += p / heads
        out.append([recv[int(p)] for p in span_idx[bi]])
    return out


@pytest.mark.parametrize("r", [1, 5, 11])
def test_fastv_equals_direct(r):
    gen = torch.Generator().manual_seed(300 + r)
    q, k, span_idx, text_idx, text_valid, key_valid = _llm_inputs(gen)
    scale = 8**-0.5
    scores = LLMScores(q, k, scale, span_idx, text_idx, text_valid, key_valid)
    plan = plan_llm_step(METHODS["fastv"].llm, scores, r, FicocoParams())
    b, n = span_idx.shape
    want = direct_received(q, k, scale, key_valid, span_idx)
    torch.testing.assert_close(scores.received, torch.tensor(want, dtype=F64), rtol=1e-10, atol=1e-13)
    x = torch.randn(b, n, 6, generator=gen, dtype=F64)
    got_x, _ = compress.apply_plan(x, torch.ones(b, n, 1, dtype=F64), plan)
    for bi in range(b):
        ranked = sorted(range(n), key=lambda j: want[bi][j])  # least attended first
        assert sorted(plan.src_idx[bi].tolist()) == sorted(ranked[:r])
        assert plan.keep_idx[bi].tolist() == sorted(ranked[r:])
        assert torch.equal(got_x[bi], x[bi, sorted(ranked[r:])])


# ------------------------------------------------------------------ FiCoCo-V end to end


def direct_vision_logits(q, k, scale):
    """(b, N, N): head-mean of each head's scaled q k^T, head by head."""
    b, heads = q.shape[:2]
    out = []
    for bi in range(b):
        acc = torch.zeros(q.shape[2], q.shape[2], dtype=q.dtype)
        for h in range(heads):
            acc = acc + q[bi, h] @ k[bi, h].T
        out.append(acc / heads * scale)
    return torch.stack(out)


@pytest.mark.parametrize("n_cells,r,eps", [(576, 100, 0.998), (576, 150, 0.9), (300, 60, 0.9)])
def test_ficoco_v_step_equals_loop_composition(n_cells, r, eps):
    gen = torch.Generator().manual_seed(n_cells + r)
    b, heads, d, c, grid_side = 2, 3, 8, 4, 24
    p = FicocoParams(eps=eps)
    grid_pos = torch.stack([torch.randperm(576, generator=gen)[:n_cells].sort().values for _ in range(b)])
    q = torch.randn(b, heads, 1 + n_cells, d, generator=gen, dtype=F64)
    k = torch.randn(b, heads, 1 + n_cells, d, generator=gen, dtype=F64)
    x, size = torch.randn(b, n_cells, c, generator=gen, dtype=F64), _sizes(gen, b, n_cells)
    scale = d**-0.5
    plan = plan_vision_step(METHODS["ficoco-v"].vision, VisionScores(q, k, scale), grid_pos, grid_side, r, p)
    got_x, got_s = compress.apply_plan(x, size, plan)

    logits = direct_vision_logits(q, k, scale)
    red = ref_ficoco_v_redundancy(logits, grid_pos, grid_side, p.beta, p.window, p.penalty_scale)
    srcs, keeps = ref_split(red, r)
    keep_idx = torch.tensor(keeps)
    src_idx = torch.tensor([sorted(s) for s in srcs])
    maps = ref_adaptive_targets(logits[:, 1:, 1:], src_idx, keep_idx, p.eps)
    want_x, want_s = ref_merge(x, size, keep_idx, src_idx, maps)

    assert plan.keep_idx.tolist() == keeps
    assert [set(s) for s in plan.src_idx.tolist()] == srcs
    if eps == 0.9:
        assert max(len(m) for per in maps for m in per) > 1
    torch.testing.assert_close(got_x, want_x, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(got_s, want_s, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(got_s.sum((1, 2)), size.sum((1, 2)))


# ------------------------------------------------------------------ FiCoCo-L end to end


@pytest.mark.parametrize("eps", [0.998, 0.9])
def test_ficoco_l_step_equals_loop_composition(eps):
    """FiCoCo-L as documented in methods/filter: redundancy g*sum_j vv - (1-g)*mean over real
    text of tv; rows a*vv + (1-a)*vt@tv; adaptive targets with the source's own entry excluded."""
    gen = torch.Generator().manual_seed(400 + int(eps * 1000))
    n, r = 40, 13
    q, k, span_idx, text_idx, text_valid, key_valid = _llm_inputs(gen, seq=64, n=n)
    scale, p = 8**-0.5, FicocoParams(eps=eps)
    scores = LLMScores(q, k, scale, span_idx, text_idx, text_valid, key_valid)
    plan = plan_llm_step(METHODS["ficoco-l"].llm, scores, r, p)
    b, heads = q.shape[:2]
    t = text_idx.shape[1]

    def block(bi, rows, cols):
        out = [[0.0] * len(cols) for _ in rows]
        for h in range(heads):
            qs, ks = q[bi, h].tolist(), k[bi, h].tolist()
            for i, ri in enumerate(rows):
                for j, cj in enumerate(cols):
                    out[i][j] += _dot(qs[ri], ks[cj]) * scale / heads
        return out

    red, rows_all = [], []
    for bi in range(b):
        span, text = span_idx[bi].tolist(), text_idx[bi].tolist()
        valid = [ti for ti in range(t) if text_valid[bi, ti]]
        vv, tv, vt = block(bi, span, span), block(bi, text, span), block(bi, span, text)
        red.append([
            p.g * sum(vv[i]) - (1 - p.g) * (sum(tv[ti][i] for ti in valid) / len(valid))
            for i in range(n)
        ])
        rows_all.append([
            [p.a * vv[i][j] + (1 - p.a) * sum(vt[i][ti] * tv[ti][j] for ti in valid) for j in range(n)]
            for i in range(n)
        ])
    srcs, keeps = ref_split(torch.tensor(red, dtype=F64), r)
    keep_idx, src_idx = torch.tensor(keeps), torch.tensor([sorted(s) for s in srcs])
    maps = ref_adaptive_targets(torch.tensor(rows_all, dtype=F64), src_idx, keep_idx, p.eps, exclude_self=True)

    assert plan.keep_idx.tolist() == keeps
    assert [set(s) for s in plan.src_idx.tolist()] == srcs
    x, size = torch.randn(b, n, 5, generator=gen, dtype=F64), _sizes(gen, b, n)
    got_x, got_s = compress.apply_plan(x, size, plan)
    want_x, want_s = ref_merge(x, size, keep_idx, src_idx, maps)
    torch.testing.assert_close(got_x, want_x, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(got_s, want_s, rtol=1e-10, atol=1e-10)
