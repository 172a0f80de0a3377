"""Apply and remove token reduction on transformers' LlavaForConditionalGeneration.

`apply(model, "ficoco-v", schedule)` swaps a few modules onto small subclasses (see
patch_vision.py, patch_llm.py) and records the setup on `model.ficoco_setup`; `remove(model)`
restores the original classes. Applying twice replaces the first setup. `reduced(...)` is the
context-manager form.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn
from transformers.models.clip.modeling_clip import CLIPEncoder, CLIPEncoderLayer
from transformers.models.llama.modeling_llama import LlamaDecoderLayer, LlamaModel
from transformers.models.llava.modeling_llava import LlavaModel

from ficoco_edge.arch import LLMArch, VisionArch
from ficoco_edge.errors import UnsupportedModelError
from ficoco_edge.models.patch_llm import LLMStep, ReducingLlamaDecoderLayer, ReducingLlamaModel, ReducingLlavaModel
from ficoco_edge.models.patch_vision import ReducingCLIPEncoder, ReducingCLIPEncoderLayer, VisionStep
from ficoco_edge.reduction.registry import FicocoParams, get_method
from ficoco_edge.reduction.schedule import Schedule

_SWAPS = ((CLIPEncoder, ReducingCLIPEncoder), (CLIPEncoderLayer, ReducingCLIPEncoderLayer),
          (LlamaModel, ReducingLlamaModel), (LlamaDecoderLayer, ReducingLlamaDecoderLayer),
          (LlavaModel, ReducingLlavaModel))


@dataclass(frozen=True)
class ReductionSetup:
    method: str
    schedule: Schedule
    params: FicocoParams
    vision_removals: tuple[int, ...]
    llm_removals: tuple[int, ...]


@dataclass(frozen=True)
class LlavaParts:
    llava: LlavaModel
    encoder: CLIPEncoder
    llm: LlamaModel


def find_parts(model: nn.Module) -> LlavaParts:
    """Locate the CLIP encoder and Llama decoder of a LLaVA model, or say what was found."""
    llava = getattr(model, "model", model)
    tower = getattr(llava, "vision_tower", None)
    encoder = getattr(getattr(tower, "vision_model", tower), "encoder", None)
    llm = getattr(llava, "language_model", None)
    if isinstance(llava, LlavaModel) and isinstance(encoder, CLIPEncoder) and isinstance(llm, LlamaModel):
        return LlavaParts(llava, encoder, llm)
    found = [type(m).__name__ for m in (model, llava, encoder, llm) if m is not None]
    raise UnsupportedModelError(
        "expected a LlavaForConditionalGeneration with a CLIP vision tower and a Llama-family LLM; "
        f"found {', '.join(dict.fromkeys(found))}"
    )


def vision_arch(config) -> VisionArch:
    v = config.vision_config
    return VisionArch(v.num_hidden_layers, v.hidden_size, v.intermediate_size, v.num_attention_heads,
                      v.image_size, v.patch_size, config.vision_feature_layer)


def llm_arch(config) -> LLMArch:
    t = config.text_config
    return LLMArch(t.num_hidden_layers, t.hidden_size, t.intermediate_size, t.num_attention_heads,
                   t.num_key_value_heads, t.vocab_size)


def _swap(module: nn.Module) -> None:
    for base, sub in _SWAPS:
        if type(module) is base:
            module.__class__ = sub


def _restore(module: nn.Module) -> None:
    for base, sub in _SWAPS:
        if type(module) is sub:
            module.__class__ = base
    for attr in ("ficoco_step", "ficoco_image_tokens"):
        module.__dict__.pop(attr, None)


def apply(model: nn.Module, method: str, schedule: Schedule | None = None,
          params: FicocoParams = FicocoParams()) -> ReductionSetup:
    """Patch `model` in place for `method` at `schedule`; returns the recorded setup."""
    parts = find_parts(model)
    remove(model)
    m = get_method(method)
    schedule = schedule or Schedule(visual_tokens_in=vision_arch(model.config).num_patches)
    v_removals = schedule.vision_reductions(vision_arch(model.config)) if m.vision else []
    llm_tokens = schedule.llm_visual_tokens_per_layer(parts.llm.config.num_hidden_layers)
    l_removals = [a - b for a, b in zip(llm_tokens, llm_tokens[1:] + llm_tokens[-1:])] if m.llm else []
    grid_side = model.config.vision_config.image_size // model.config.vision_config.patch_size
    for layer, r in zip(parts.encoder.layers, v_removals):
        if r > 0:
            layer.__class__ = ReducingCLIPEncoderLayer
            layer.ficoco_step = VisionStep(m.vision, r, params, grid_side)
    for layer, r in zip(parts.llm.layers, l_removals):
        if r > 0:
            layer.__class__ = ReducingLlamaDecoderLayer
            layer.ficoco_step = LLMStep(m.llm, r, params)
    if any(v_removals):
        _swap(parts.encoder)
    if any(l_removals):
        _swap(parts.llm)
        _swap(parts.llava)
        parts.llm.ficoco_image_tokens = schedule.vision_keep
    setup = ReductionSetup(method, schedule, params, tuple(v_removals), tuple(l_removals))
    model.ficoco_setup = setup
    return setup


def remove(model: nn.Module) -> None:
    """Undo `apply`; a model that was never patched is left as it is."""
    for module in model.modules():
        _restore(module)
    model.__dict__.pop("ficoco_setup", None)


@contextmanager
def reduced(model: nn.Module, method: str, schedule: Schedule | None = None, params: FicocoParams = FicocoParams()):
    """`with reduced(model, "ficoco-l", schedule): model.generate(...)`."""
    apply(model, method, schedule, params)
    try:
        yield model
    finally:
        remove(model)


def image_tokens_for(model: nn.Module) -> int:
    """Image tokens the prompt must hold for the applied setup (patches leaving the tower)."""
    setup = getattr(model, "ficoco_setup", None)
    if setup is None or not any(setup.vision_removals):
        return vision_arch(model.config).num_patches
    return setup.schedule.vision_keep


def expand_image_tokens(input_ids: torch.Tensor, image_token_id: int, count: int) -> torch.Tensor:
    """Replace each sample's single image placeholder with `count` copies. (b, s) -> (b, s + count - 1)."""
    rows = []
    for row in input_ids:
        at = int((row == image_token_id).nonzero()[0])
        rows.append(torch.cat([row[:at], row.new_full((count,), image_token_id), row[at + 1:]]))
    return torch.stack(rows)
