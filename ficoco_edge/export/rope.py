"""Rotary position embedding (RoPE) in the exported attention, in one of two forms.

- `SplitRope`: cos/sin computed in the graph and applied with standard ops (Slice, Neg, Concat,
  Mul, Add: ~6 nodes for each of q and k in every layer). Every parser reads it (TensorRT).
- `FusedRope`: onnxruntime's `com.microsoft.RotaryEmbedding`, one node for each of q and k,
  reading cos/sin from tables indexed by the tokens' original positions, so FiCoCo-L's kept
  tokens keep their positions. For the `ort` target: fewer nodes is a fixed cost less per run,
  which matters most for short (reduced) prefills and for every decode step.

Both take a projection x (1, s, heads * d) and return the rotated (1, s, heads, d); in PyTorch
(tracing and validation) both compute `x * cos + rotate_half(x) * sin`, as transformers does.
"""

from __future__ import annotations

import torch


def rope_tables(rotary_emb, positions: int, device=None) -> tuple[torch.Tensor, torch.Tensor] | None:
    """cos, sin (positions, d / 2) of the model's rotary embedding for positions 0..positions-1, or
    None where its cos is not two equal halves (a RoPE the fused op cannot express)."""
    probe = torch.zeros(1, 1, dtype=torch.float32, device=device)
    cos, sin = rotary_emb(probe, torch.arange(positions, device=device).unsqueeze(0))
    half = cos.shape[-1] // 2
    if not (torch.equal(cos[..., :half], cos[..., half:]) and torch.equal(sin[..., :half], sin[..., half:])):
        return None
    return cos[0, :, :half].float().contiguous(), sin[0, :, :half].float().contiguous()


def rotate_half(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x (1, s, heads, d) with cos, sin (1, s, 1, d); halves split at the static d // 2."""
    half = x.shape[-1] // 2
    if torch.jit.is_tracing():
        half = int(half)
    rotated = torch.cat((-x[..., half:], x[..., :half]), -1)
    return x * cos + rotated * sin


class SplitRope:
    """RoPE from cos, sin (1, s, d) as the model's rotary_emb returns them."""

    def __init__(self, cos: torch.Tensor, sin: torch.Tensor):
        self.cos, self.sin = cos.unsqueeze(2), sin.unsqueeze(2)

    def __call__(self, x: torch.Tensor, heads: int, d: int) -> torch.Tensor:
        return rotate_half(x.view(1, -1, heads, d), self.cos, self.sin)


class _RotaryEmbedding(torch.autograd.Function):
    """Traced as one com.microsoft.RotaryEmbedding node; runs the same arithmetic in PyTorch."""

    @staticmethod
    def forward(ctx, x, positions, cos_table, sin_table, heads: int):
        d = 2 * cos_table.shape[-1]
        cos, sin = (torch.cat([t[positions]] * 2, -1).unsqueeze(2).to(x.dtype) for t in (cos_table, sin_table))
        return rotate_half(x.view(*x.shape[:2], heads, d), cos, sin).reshape(x.shape)

    @staticmethod
    def symbolic(g, x, positions, cos_table, sin_table, heads: int):
        out = g.op("com.microsoft::RotaryEmbedding", x, positions, cos_table, sin_table, interleaved_i=0,
                   num_heads_i=heads)
        out.setType(x.type())
        return out


class FusedRope:
    """RoPE at `positions` (1, s) int64 from tables cos, sin (P, d / 2) (rope_tables)."""

    def __init__(self, positions: torch.Tensor, tables: tuple[torch.Tensor, torch.Tensor]):
        self.positions, self.tables = positions, tables

    def __call__(self, x: torch.Tensor, heads: int, d: int) -> torch.Tensor:
        return _RotaryEmbedding.apply(x, self.positions, *self.tables, heads).view(1, -1, heads, d)
