"""Token reduction inside a CLIP vision encoder (FiCoCo-V, ToMe, EViT, random).

Two small subclasses swapped onto existing modules: the encoder threads a per-forward
`VisionTokenState` through its layers, and a reducing layer removes tokens between its
attention and its MLP. Non-reducing layers are untouched.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers.modeling_outputs import BaseModelOutput
from transformers.models.clip.modeling_clip import CLIPEncoder, CLIPEncoderLayer

from ficoco_edge.reduction.compress import apply_plan, gather_tokens
from ficoco_edge.reduction.methods import plan_vision_step
from ficoco_edge.reduction.registry import FicocoParams, Stages
from ficoco_edge.reduction.scores import VisionScores


@dataclass(frozen=True)
class VisionStep:
    """Configuration of one reducing vision layer (set at apply time, never mutated)."""

    stages: Stages
    remove: int
    params: FicocoParams
    grid_side: int


class VisionTokenState:
    """Per-forward bookkeeping of the patch tokens: original grid cell and size of each.

    grid_pos: (b, n) int64, size: (b, n, 1). A fused (EViT) token gets cell -1.
    """

    def __init__(self, batch: int, n_patches: int, device: torch.device, dtype: torch.dtype):
        self.grid_pos = torch.arange(n_patches, device=device).expand(batch, n_patches)
        self.size = torch.ones(batch, n_patches, 1, device=device, dtype=dtype)

    def reduce(self, hidden: torch.Tensor, scores: VisionScores, step: VisionStep) -> torch.Tensor:
        """hidden: (b, 1 + n, c) with [CLS] first -> (b, 1 + n - remove, c)."""
        plan = plan_vision_step(step.stages, scores, self.grid_pos, step.grid_side, step.remove, step.params, self.size)
        patches, self.size = apply_plan(hidden[:, 1:], self.size, plan)
        self.grid_pos = gather_tokens(self.grid_pos, plan.keep_idx)
        if plan.fuse_weight is not None:
            self.grid_pos = torch.cat([self.grid_pos, torch.full_like(self.grid_pos[:, :1], -1)], 1)
        return torch.cat([hidden[:, :1], patches], 1)


def vision_scores(attn, normed: torch.Tensor) -> VisionScores:
    """Recompute the layer's per-head q, k (cheap next to the layer) for the filter stage."""
    shape = (*normed.shape[:-1], -1, attn.head_dim)
    q = attn.q_proj(normed).view(shape).transpose(1, 2)
    k = attn.k_proj(normed).view(shape).transpose(1, 2)
    return VisionScores(q, k, attn.scale)


class ReducingCLIPEncoderLayer(CLIPEncoderLayer):
    """A CLIP layer that removes `ficoco_step.remove` patch tokens after its attention."""

    ficoco_step: VisionStep

    def forward(self, hidden_states, attention_mask=None, token_state: VisionTokenState | None = None, **kwargs):
        residual = hidden_states
        normed = self.layer_norm1(hidden_states)
        attn_out, _ = self.self_attn(hidden_states=normed, attention_mask=attention_mask, **kwargs)
        hidden_states = residual + attn_out
        if token_state is not None:
            hidden_states = token_state.reduce(hidden_states, vision_scores(self.self_attn, normed), self.ficoco_step)
        residual = hidden_states
        return residual + self.mlp(self.layer_norm2(hidden_states))


class ReducingCLIPEncoder(CLIPEncoder):
    """Threads one VisionTokenState through the layers of a single forward."""

    def forward(self, inputs_embeds, attention_mask=None, **kwargs):
        b, n_tokens, _ = inputs_embeds.shape
        state = VisionTokenState(b, n_tokens - 1, inputs_embeds.device, inputs_embeds.dtype)
        hidden_states = inputs_embeds
        for layer in self.layers:
            if isinstance(layer, ReducingCLIPEncoderLayer):
                hidden_states = layer(hidden_states, attention_mask, token_state=state, **kwargs)
            else:
                hidden_states = layer(hidden_states, attention_mask, **kwargs)
        return BaseModelOutput(last_hidden_state=hidden_states)
