"""Token reduction inside a Llama-family decoder over the real image span (FiCoCo-L, FastV).

Semantics (docs/semantics.md): a reducing layer removes image tokens after its attention, so
it caches every token and the layers after it cache fewer. Kept tokens keep their original
RoPE positions; decode tokens take the next original position in every layer, which is what
HF's position bookkeeping gives since layer 0 is never reduced. Masks and rotary tables are
gathered at the kept positions; for decode the per-layer kept positions are remembered on the
cache object of that generation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers.cache_utils import DynamicCache
from transformers.masking_utils import create_causal_mask
from transformers.modeling_outputs import BaseModelOutputWithPast
from transformers.models.llama.modeling_llama import LlamaDecoderLayer, LlamaModel, apply_rotary_pos_emb, repeat_kv
from transformers.models.llava.modeling_llava import LlavaModel

from ficoco_edge.errors import UsageError
from ficoco_edge.models.hf_compat import cache_kwargs
from ficoco_edge.reduction.compress import apply_plan, gather_tokens
from ficoco_edge.reduction.filter import split
from ficoco_edge.reduction.methods import plan_llm_step
from ficoco_edge.reduction.registry import FicocoParams, Stages
from ficoco_edge.reduction.scores import LLMScores


@dataclass(frozen=True)
class LLMStep:
    """Configuration of one reducing LLM layer (set at apply time, never mutated)."""

    stages: Stages
    remove: int
    params: FicocoParams


class TokenTrack:
    """Per-forward record of which original positions the current sequence holds.

    kept: (b, S_cur) original positions; span_idx: (b, n) current positions of the image tokens
    (contiguous); key_valid: (b, S_cur) padding mask; size: (b, n, 1) merged-token sizes.
    """

    def __init__(self, image_mask: torch.Tensor, n_image: int, attention_mask: torch.Tensor | None):
        b, s = image_mask.shape
        start = image_mask.int().argmax(1)
        self.span_idx = start.unsqueeze(1) + torch.arange(n_image, device=image_mask.device)
        if not torch.compiler.is_compiling() and not torch.jit.is_tracing():
            if not bool((image_mask.sum(1) == n_image).all() and image_mask.gather(1, self.span_idx).all()):
                raise UsageError(
                    f"each prompt must hold one contiguous span of {n_image} image tokens "
                    f"(found {image_mask.sum(1).tolist()}); build prompts with ficoco_edge.models.expand_image_tokens"
                )
        self.kept = torch.arange(s, device=image_mask.device).expand(b, s)
        valid = torch.ones_like(image_mask) if attention_mask is None else attention_mask.bool()
        self.key_valid = valid
        self.size = torch.ones(b, n_image, 1, device=image_mask.device)
        self.reduced = False

    def scores(self, attn, normed: torch.Tensor, position_embeddings) -> LLMScores:
        """Recompute this layer's q, k (after RoPE, GQA-repeated) for the filter stage."""
        shape = (*normed.shape[:-1], -1, attn.head_dim)
        q = attn.q_proj(normed).view(shape).transpose(1, 2)
        k = attn.k_proj(normed).view(shape).transpose(1, 2)
        q, k = apply_rotary_pos_emb(q, k, *position_embeddings)
        k = repeat_kv(k, attn.num_key_value_groups)
        pos = torch.arange(normed.shape[1], device=normed.device).expand(normed.shape[0], -1)
        span_end = self.span_idx[:, -1:] + 1
        text_valid = (pos >= span_end) & self.key_valid
        return LLMScores(q, k, attn.scaling, self.span_idx, pos, text_valid, self.key_valid)

    def reduce(self, hidden: torch.Tensor, scores: LLMScores, step: LLMStep) -> torch.Tensor:
        """hidden: (b, S_cur, c) -> (b, S_cur - remove, c); the span stays contiguous."""
        plan = plan_llm_step(step.stages, scores, step.remove, step.params)
        span_h, self.size = apply_plan(gather_tokens(hidden, self.span_idx), self.size.to(hidden.dtype), plan)
        removed = self.span_idx.gather(1, plan.src_idx)
        order = torch.zeros_like(self.kept).scatter(1, removed, 1)
        _, keep_full = split(order.to(hidden.dtype), removed.shape[1])
        hidden = gather_tokens(hidden, keep_full)
        self.span_idx = self.span_idx[:, : span_h.shape[1]]
        hidden = hidden.scatter(1, self.span_idx.unsqueeze(-1).expand_as(span_h), span_h)
        self.kept = self.kept.gather(1, keep_full)
        self.key_valid = self.key_valid.gather(1, keep_full)
        self.reduced = True
        return hidden


def _gather_mask(mask, rows: torch.Tensor | None, cols: torch.Tensor):
    """mask: (b, 1, q, k) -> rows/cols gathered at positions (b, q'), (b, k')."""
    if mask is None:
        return None
    mask = mask.expand(cols.shape[0], -1, -1, -1)
    if rows is not None:
        mask = mask.gather(2, rows[:, None, :, None].expand(-1, 1, -1, mask.shape[-1]))
    return mask.gather(3, cols[:, None, None, :].expand(-1, 1, mask.shape[2], -1))


def _gather_rotary(position_embeddings, kept: torch.Tensor):
    return tuple(gather_tokens(t.expand(kept.shape[0], -1, -1), kept) for t in position_embeddings)


class ReducingLlamaDecoderLayer(LlamaDecoderLayer):
    """A decoder layer that removes `ficoco_step.remove` image tokens after its attention."""

    ficoco_step: LLMStep

    def forward(self, hidden_states, attention_mask=None, position_ids=None, past_key_values=None,
                use_cache=False, position_embeddings=None, token_track: TokenTrack | None = None, cache=None,
                **kwargs):
        cache = past_key_values if cache is None else cache  # the argument's name before / from transformers 5.24
        residual = hidden_states
        normed = self.input_layernorm(hidden_states)
        attn_out, _ = self.self_attn(hidden_states=normed, attention_mask=attention_mask, position_ids=position_ids,
                                     use_cache=use_cache, position_embeddings=position_embeddings,
                                     **cache_kwargs(cache), **kwargs)
        hidden_states = residual + attn_out
        if token_track is not None:
            scores = token_track.scores(self.self_attn, normed, position_embeddings)
            hidden_states = token_track.reduce(hidden_states, scores, self.ficoco_step)
        residual = hidden_states
        return residual + self.mlp(self.post_attention_layernorm(hidden_states))


class ReducingLlamaModel(LlamaModel):
    """LlamaModel whose layer loop threads a TokenTrack (prefill) or per-layer kept positions (decode)."""

    ficoco_image_tokens: int

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None,
                inputs_embeds=None, use_cache=None, image_token_mask=None, cache=None, **kwargs):
        past_key_values = past_key_values if cache is None else cache  # named `cache` from transformers 5.24
        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids)
        use_cache = self.config.use_cache if use_cache is None else use_cache
        if use_cache and past_key_values is None:
            past_key_values = DynamicCache(config=self.config)
        if position_ids is None:
            seen = past_key_values.get_seq_length() if past_key_values is not None else 0
            position_ids = (torch.arange(inputs_embeds.shape[1], device=inputs_embeds.device) + seen).unsqueeze(0)
        mask = create_causal_mask(config=self.config, inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                                  position_ids=position_ids, **cache_kwargs(past_key_values))
        rotary = self.rotary_emb(inputs_embeds, position_ids=position_ids)
        track = None
        if image_token_mask is not None and bool(image_token_mask.any()):
            track = TokenTrack(image_token_mask, self.ficoco_image_tokens, attention_mask)
        remembered = getattr(past_key_values, "ficoco_kept", None)
        layer_kept, hidden = [], inputs_embeds
        for i, layer in enumerate(self.layers[: self.config.num_hidden_layers]):
            layer_mask, layer_rotary, layer_pos = mask, rotary, position_ids
            if track is not None and track.reduced:
                layer_mask = _gather_mask(mask, track.kept, track.kept)
                layer_rotary = _gather_rotary(rotary, track.kept)
                layer_pos = position_ids.expand(track.kept.shape[0], -1).gather(1, track.kept)
            elif track is None and remembered is not None and mask is not None:
                new = torch.arange(remembered[1], mask.shape[-1], device=mask.device)
                layer_mask = _gather_mask(mask, None, torch.cat([remembered[0][i], new.expand(mask.shape[0], -1)], 1))
            if track is not None:
                layer_kept.append(track.kept)
            extra = {"token_track": track} if isinstance(layer, ReducingLlamaDecoderLayer) else {}
            hidden = layer(hidden, attention_mask=layer_mask, position_embeddings=layer_rotary, position_ids=layer_pos,
                           use_cache=use_cache, **cache_kwargs(past_key_values), **extra, **kwargs)
        if track is not None and track.reduced and past_key_values is not None:
            # Decode steps need each layer's kept positions to slice padding masks.
            past_key_values.ficoco_kept = (tuple(layer_kept), inputs_embeds.shape[1])
        return BaseModelOutputWithPast(last_hidden_state=self.norm(hidden), **cache_kwargs(past_key_values))


class ReducingLlavaModel(LlavaModel):
    """Passes the image-token positions of the prompt down to the language model."""

    def forward(self, *args, **kwargs):
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        if input_ids is not None:
            kwargs["image_token_mask"] = input_ids == self.config.image_token_id
        return super().forward(*args, **kwargs)
