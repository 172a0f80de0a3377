"""The exported graphs as small torch modules over a (possibly patched) LLaVA model, batch 1.

    vision:  pixel_values (1, 3, 336, 336) -> image_embeds (1, n_v, H)          CLIP + FiCoCo-V + projector
    prefill: inputs_embeds (1, S, H), image_start () -> logits (1, V), key_l/value_l (1, kvh, S_l, d)
    decode:  inputs_embeds (1, 1, H), position (1, 1), past_lengths (L,), past key_l/value_l
             (1, kvh, C_l, d) -> logits (1, V), new key_l/value_l (1, kvh, 1, d)

Prefill runs FiCoCo-L / FastV through the same TokenTrack as the PyTorch path, so every layer's
cache holds exactly S_l tokens; kept tokens keep their original RoPE positions and a decode token
sits at the next original position in every layer. Decode reads the first past_lengths[l] slots of
layer l's buffer (capacity C_l, any size) and returns only the new token's key/value: the runtime
writes them in place at index past_lengths[l]. The exported decode builds one attention mask per
distinct S_l, so layers with equal S_l must get equal past_lengths and capacities (the runtime's
per-layer caches always do: they are filled in lockstep).

For TensorRT (`span_only=True`) prefill selects the tokens a reducing layer keeps by index
arithmetic around the contiguous image span instead of the TopK over the whole sequence that
TokenTrack uses, so no TopK's K depends on the dynamic text length; the result is the same.
"""

from __future__ import annotations

import torch
from torch import nn

from ficoco_edge.models.llava import find_parts
from ficoco_edge.models.patch_llm import LLMStep, ReducingLlamaDecoderLayer, TokenTrack, _gather_rotary
from ficoco_edge.export.rope import FusedRope, SplitRope, rope_tables
from ficoco_edge.reduction.compress import apply_plan, gather_tokens
from ficoco_edge.reduction.methods import plan_llm_step


def decode_bias(length: torch.Tensor, capacity: int | torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(capacity + 1,) additive mask over a cache buffer plus the new token: 0 on the `length`
    filled slots and on the new token (index capacity), the dtype's minimum elsewhere."""
    slots = torch.arange(capacity + 1, device=like.device)
    visible = (slots < length) | (slots == capacity)
    return torch.where(visible, 0.0, torch.finfo(like.dtype).min).to(like.dtype)


def causal_bias(s: int | torch.Tensor, dtype: torch.dtype, device) -> torch.Tensor:
    """(s, s) additive mask: 0 on and below the diagonal, the dtype's minimum above it.
    Built once per token count rather than once per layer, as SDPA's is_causal would be exported."""
    idx = torch.arange(s, device=device)
    return torch.where(idx[None, :] > idx[:, None], torch.finfo(dtype).min, 0.0).to(dtype)


class Rope:
    """The graph's RoPE at given token positions: fused (onnxruntime's op over cos/sin tables of
    the model's positions) or split into standard ops (TensorRT, or a RoPE the op cannot express)."""

    def __init__(self, llm, fused: bool):
        self.llm = llm
        self.tables = rope_tables(llm.rotary_emb, llm.config.max_position_embeddings) if fused else None

    def at(self, like: torch.Tensor, positions: torch.Tensor):
        """positions (1, s) int64 -> a callable x (1, s, heads * d), heads, d -> (1, s, heads, d)."""
        if self.tables is not None:
            return FusedRope(positions, self.tables)
        return SplitRope(*self.llm.rotary_emb(like, positions))


def attend(attn, normed: torch.Tensor, rope, bias: torch.Tensor, past=None, one_token: bool = False):
    """One attention block with grouped-query heads broadcast instead of repeated.

    normed (1, s, H); rope: Rope.at(...) for these s tokens; bias: additive (s, S) with S = past + s;
    past: key, value (1, kvh, P, d) -> output (1, s, H), this call's key, value (1, kvh, s, d).
    Head i reads key/value head i // g (g = heads / kvh), as repeat_kv orders them; every reshape
    has static sizes except the token axis, which keeps the exported graph small. The scores are
    scaled after the product, as transformers does (onnxruntime folds it into the MatMul).
    one_token (decode, s = 1): moving the token axis moves no data, so it is a reshape, not a
    Transpose node (4 per layer fewer).
    """
    d, kvh = attn.head_dim, attn.config.num_key_value_heads
    g = attn.num_key_value_groups
    q = rope(attn.q_proj(normed), kvh * g, d).view(1, -1, kvh, g, d)
    k = rope(attn.k_proj(normed), kvh, d)
    v = attn.v_proj(normed).view(1, -1, kvh, d)
    if one_token:
        q, k, v = q.reshape(1, kvh, g, 1, d), k.reshape(1, kvh, 1, d), v.reshape(1, kvh, 1, d)
    else:
        q, k, v = q.permute(0, 2, 3, 1, 4), k.transpose(1, 2), v.transpose(1, 2)  # (1, kvh, g, s, d), (1, kvh, s, d)
    keys, values = (k, v) if past is None else (torch.cat([past[0], k], 2), torch.cat([past[1], v], 2))
    scores = (q @ keys.unsqueeze(2).transpose(-1, -2)) * attn.scaling + bias  # (1, kvh, g, s, S)
    weights = torch.softmax(scores.float(), -1).to(q.dtype)  # fp32 softmax, as transformers' eager attention
    out = weights @ values.unsqueeze(2)  # (1, kvh, g, s, d)
    out = out.reshape(1, 1, -1) if one_token else out.permute(0, 3, 1, 2, 4).reshape(1, -1, kvh * g * d)
    return attn.o_proj(out), k, v


class SpanTokenTrack(TokenTrack):
    """TokenTrack whose reduce keeps, in order: the tokens before the span, the span's kept image
    tokens (merged), the tokens after it. Every TopK runs over the span (static size)."""

    def reduce(self, hidden: torch.Tensor, scores, step: LLMStep) -> torch.Tensor:
        """hidden: (b, S, c) -> (b, S - remove, c), as TokenTrack.reduce."""
        plan = plan_llm_step(step.stages, scores, step.remove, step.params)
        if plan.fuse_weight is not None:
            raise NotImplementedError("an LLM-side fuse plan adds a token; no LLM method uses one")
        span_h, self.size = apply_plan(gather_tokens(hidden, self.span_idx), self.size.to(hidden.dtype), plan)
        kept_span = self.span_idx.gather(1, plan.keep_idx)  # (b, n_keep) positions, ascending
        n_keep = plan.keep_idx.shape[1]
        start = self.span_idx[:, :1]  # the span is contiguous: positions start .. start + len - 1
        pos = torch.arange(hidden.shape[1] - step.remove, device=hidden.device).unsqueeze(0)
        offset = (pos - start).clamp(0, n_keep - 1)  # (b, S - remove): index into the kept span tokens
        in_span = (pos >= start) & (pos < start + n_keep)
        keep_full = torch.where(pos < start, pos, torch.where(in_span, kept_span.gather(1, offset), pos + step.remove))
        # the merged span tokens by selection, not scatter: TensorRT 8.6's dynamic-shape compiler
        # fails on a ScatterElements here (benchmarks/tensorrt86/bisect_build.py)
        hidden = torch.where(in_span.unsqueeze(-1), gather_tokens(span_h, offset), gather_tokens(hidden, keep_full))
        self.span_idx = self.span_idx[:, :n_keep]
        self.kept = self.kept.gather(1, keep_full)
        self.key_valid = self.key_valid.gather(1, keep_full)
        self.reduced = True
        return hidden


class VisionGraph(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        llava = self.model.model
        hidden = llava.vision_tower(pixel_values, output_hidden_states=True).hidden_states
        features = hidden[self.model.config.vision_feature_layer][:, 1:]  # "default": drop [CLS]
        return llava.multi_modal_projector(features)


class PrefillGraph(nn.Module):
    """span_only: reduce by index arithmetic around the image span (TensorRT); fused_rope: RoPE as
    onnxruntime's RotaryEmbedding op (rope.py)."""

    def __init__(self, model, image_tokens: int, span_only: bool = False, fused_rope: bool = False):
        super().__init__()
        self.model, self.image_tokens = model, image_tokens
        self.track = SpanTokenTrack if span_only else TokenTrack
        self.rope = Rope(find_parts(model).llm, fused_rope)

    def forward(self, inputs_embeds: torch.Tensor, image_start: torch.Tensor):
        llm = find_parts(self.model).llm
        s = inputs_embeds.shape[1]
        positions = torch.arange(s, device=inputs_embeds.device).unsqueeze(0)
        rotary = llm.rotary_emb(inputs_embeds, positions)  # (cos, sin) for the reducing layer's scores
        span = (positions >= image_start) & (positions < image_start + self.image_tokens)
        track = self.track(span, self.image_tokens, None)
        rope, bias = self.rope.at(inputs_embeds, positions), causal_bias(s, inputs_embeds.dtype, inputs_embeds.device)
        hidden, caches = inputs_embeds, []
        for layer in llm.layers:
            normed = layer.input_layernorm(hidden)
            out, k, v = attend(layer.self_attn, normed, rope, bias)
            hidden = hidden + out
            if isinstance(layer, ReducingLlamaDecoderLayer):
                scores = track.scores(layer.self_attn, normed, _gather_rotary(rotary, track.kept) if track.reduced else rotary)
                hidden = track.reduce(hidden, scores, layer.ficoco_step)
                # kept tokens keep their original positions and order: causal among themselves
                rope = self.rope.at(inputs_embeds, track.kept)
                bias = causal_bias(hidden.shape[1], hidden.dtype, hidden.device)
            hidden = hidden + layer.mlp(layer.post_attention_layernorm(hidden))
            caches += [k, v]
        logits = self.model.lm_head(llm.norm(hidden[:, -1]))
        return (logits, *caches)


def mask_sources(prefill_lengths: list[int]) -> list[int]:
    """For each layer, the first layer whose prefill cached as many tokens (S_l): layers that share
    S_l keep equal lengths and capacities (the runtime fills every cache in lockstep), so decode
    builds their attention mask once. [5, 5, 3, 3] -> [0, 0, 2, 2]."""
    return [prefill_lengths.index(n) for n in prefill_lengths]


class DecodeGraph(nn.Module):
    """mask_sources: layer i reads the mask built for layer mask_sources[i] (`mask_sources`), which
    takes ~7 nodes per layer out of the exported graph; None builds one per layer. Callers of the
    graph must then keep past_lengths and capacities equal across each group, as the runtime does."""

    def __init__(self, model, fused_rope: bool = False, mask_sources: list[int] | None = None):
        super().__init__()
        self.model, self.mask_sources = model, mask_sources
        self.rope = Rope(find_parts(model).llm, fused_rope)

    def forward(self, inputs_embeds: torch.Tensor, position: torch.Tensor, past_lengths: torch.Tensor, *past):
        llm = find_parts(self.model).llm
        rope = self.rope.at(inputs_embeds, position)
        hidden, new, biases = inputs_embeds, [], {}
        for i, layer in enumerate(llm.layers):
            past_k, past_v = past[2 * i], past[2 * i + 1]
            source = i if self.mask_sources is None else self.mask_sources[i]
            if source not in biases:
                biases[source] = decode_bias(past_lengths[source], past[2 * source].shape[2], hidden)
            normed = layer.input_layernorm(hidden)
            out, k, v = attend(layer.self_attn, normed, rope, biases[source], (past_k, past_v), one_token=True)
            hidden = hidden + out
            hidden = hidden + layer.mlp(layer.post_attention_layernorm(hidden))
            new += [k, v]
        logits = self.model.lm_head(llm.norm(hidden[:, -1]))
        return (logits, *new)
