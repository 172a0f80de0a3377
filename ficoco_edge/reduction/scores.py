"""Attention quantities a reducing layer hands to the filter and correlate stages.

They are built from the layer's own queries and keys, only at reducing layers, and each
quantity is computed on first use (so ToMe never pays for logits, EViT only for one row).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch

from ficoco_edge.reduction.compress import gather_tokens


@dataclass
class VisionScores:
    """q, k: (b, H, N, d) per-head queries and keys of a ViT layer, [CLS] at index 0."""

    q: torch.Tensor
    k: torch.Tensor
    scale: float

    @cached_property
    def logits(self) -> torch.Tensor:
        """(b, N, N) head-mean scaled q.k (pre-softmax), as the official FiCoCo code reads it."""
        return (self.q @ self.k.transpose(-1, -2)).mean(1) * self.scale

    @cached_property
    def keys(self) -> torch.Tensor:
        """(b, n, d) head-mean keys of the patches (ToMe's metric)."""
        return self.k[:, :, 1:].mean(1)

    @cached_property
    def cls_probs(self) -> torch.Tensor:
        """(b, n) head-mean softmax attention of the [CLS] query over the patches."""
        row = torch.softmax((self.q[:, :, :1] @ self.k.transpose(-1, -2)) * self.scale, dim=-1)
        return row.mean(1)[:, 0, 1:]


@dataclass
class LLMScores:
    """Quantities of an LLM layer over the image span and the text after it.

    q: (b, H, S, d) queries after RoPE; k: (b, H, S, d) keys after RoPE, already repeated for
    grouped-query attention; span_idx: (b, n) positions of the image tokens; text_idx: (b, t)
    positions of the tokens after the span, text_valid: (b, t) which of those are real text;
    key_valid: (b, S) the padding mask.
    """

    q: torch.Tensor
    k: torch.Tensor
    scale: float
    span_idx: torch.Tensor
    text_idx: torch.Tensor
    text_valid: torch.Tensor
    key_valid: torch.Tensor

    def _block(self, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """Head-mean logits of query positions rows (b, m) against key positions cols (b, p)."""
        q = gather_tokens(self.q.transpose(1, 2), rows).transpose(1, 2)  # (b, H, m, d)
        k = gather_tokens(self.k.transpose(1, 2), cols).transpose(1, 2)
        return (q @ k.transpose(-1, -2)).mean(1) * self.scale

    @cached_property
    def vv(self) -> torch.Tensor:
        """(b, n, n) vision queries -> vision keys."""
        return self._block(self.span_idx, self.span_idx)

    @cached_property
    def vt(self) -> torch.Tensor:
        """(b, n, t) vision queries -> text keys (pre-softmax; causal attention never uses it)."""
        return self._block(self.span_idx, self.text_idx) * self.text_valid.unsqueeze(1)

    @cached_property
    def tv(self) -> torch.Tensor:
        """(b, t, n) text queries -> vision keys."""
        return self._block(self.text_idx, self.span_idx) * self.text_valid.unsqueeze(-1)

    @cached_property
    def received(self) -> torch.Tensor:
        """(b, n) attention each image token gets from the last prompt token, averaged over heads.

        FastV's released code ranks by this row. A mean over every query row (the paper's wording)
        is biased under causal attention: early tokens are seen by more queries with fewer rivals,
        so it keeps the top rows of the image whatever they show.
        """
        b, heads, s, d = self.q.shape
        pos = torch.arange(s, device=self.q.device)
        valid = self.key_valid.bool()
        last = (pos * valid).argmax(-1)  # (b,) last real position (left or right padding)
        q_last = self.q.gather(2, last.view(b, 1, 1, 1).expand(b, heads, 1, d))  # (b, H, 1, d)
        logits = (q_last @ self.k.transpose(-1, -2)).squeeze(2) * self.scale  # (b, H, S)
        allowed = valid & (pos.unsqueeze(0) <= last.unsqueeze(1))
        probs = torch.softmax(logits.masked_fill(~allowed.unsqueeze(1), float("-inf")), dim=-1).mean(1)
        return gather_tokens(probs.unsqueeze(-1), self.span_idx).squeeze(-1)
