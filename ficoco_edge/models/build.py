"""Random-weight LLaVA models built from an architecture profile (tests, profiling)."""

from __future__ import annotations

import torch
from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

from ficoco_edge.arch import Arch


def llava_config(arch: Arch, attn_implementation: str = "sdpa", text_config: LlamaConfig | None = None,
                 image_token_id: int | None = None) -> LlavaConfig:
    """A transformers LlavaConfig with `arch`'s sizes (or a given LLM config).

    The image token defaults to the last vocabulary id.
    """
    v, t = arch.vision, arch.llm
    vision = CLIPVisionConfig(hidden_size=v.hidden, intermediate_size=v.intermediate, num_hidden_layers=v.layers,
                              num_attention_heads=v.heads, image_size=v.image_size, patch_size=v.patch_size)
    text = text_config or LlamaConfig(
        vocab_size=t.vocab, hidden_size=t.hidden, intermediate_size=t.intermediate, num_hidden_layers=t.layers,
        num_attention_heads=t.heads, num_key_value_heads=t.kv_heads, max_position_embeddings=4096)
    image_token_id = t.vocab - 1 if image_token_id is None else image_token_id
    config = LlavaConfig(vision_config=vision, text_config=text, image_token_id=image_token_id,
                         vision_feature_layer=v.feature_layer, vision_feature_select_strategy="default",
                         projector_hidden_act="gelu")
    config._attn_implementation = attn_implementation
    return config


def random_llava(arch: Arch, seed: int = 0, dtype: torch.dtype = torch.float32) -> LlavaForConditionalGeneration:
    """An eval-mode LLaVA with `arch`'s sizes and seeded random weights."""
    torch.manual_seed(seed)
    return LlavaForConditionalGeneration(llava_config(arch)).to(dtype).eval()
