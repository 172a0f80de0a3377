"""The embedded reference model: SmolLM2-135M-Instruct (frozen, real weights) + a small CLIP tower.

Geometry is LLaVA-1.5's (336 px, patch 14: 576 patch tokens + [CLS]), so the paper's budgets name
the same token counts. The tower and projector were trained by `ficoco_edge.training.embedded` on
easy-VQA and ship as `assets/embedded-vision.safetensors` (fp16); see docs/embedded-model.md.
"""

from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM, LlavaForConditionalGeneration

from ficoco_edge.arch import load_arch
from ficoco_edge.errors import UsageError
from ficoco_edge.models.build import llava_config
from ficoco_edge.models.smollm import smollm2_dir
from ficoco_edge.runtime.prompt import PromptFormat

# An unused special token of SmolLM2's vocabulary stands for image patches, so the LLM's
# embedding table and LM head stay exactly the released ones.
IMAGE_TOKEN = "<empty_output>"
IMAGE_TOKEN_ID = 16
SYSTEM_PROMPT = "You answer questions about the image in one word."
TEMPLATE = ("<|im_start|>system\n" + SYSTEM_PROMPT + "<|im_end|>\n<|im_start|>user\n<image>\n{question}<|im_end|>\n"
            "<|im_start|>assistant\n")
# Answers end with <|im_end|> (id 2), the token training puts after every answer. <|im_start|> (id 1)
# also closes a ChatML turn, so generation stops there too. Padding reuses <|im_end|> (masked).
ANSWER_END = "<|im_end|>"
PROMPT = PromptFormat(TEMPLATE, IMAGE_TOKEN_ID, stop_ids=(2, 1), pad_id=2)
VISION_PREFIXES = ("vision_tower.", "multi_modal_projector.")


def weights_path() -> Path:
    """The packaged tower + projector weights."""
    return Path(str(files("ficoco_edge.models") / "assets" / "embedded-vision.safetensors"))


def embedded_config(llm_config: LlamaConfig):
    """LlavaConfig: the `embedded` profile's tower around SmolLM2's own LLM config."""
    return llava_config(load_arch("embedded"), text_config=llm_config, image_token_id=IMAGE_TOKEN_ID)


def build(llm: LlamaForCausalLM) -> LlavaForConditionalGeneration:
    """A LLaVA around `llm`'s weights with a freshly initialised tower and projector."""
    model = LlavaForConditionalGeneration(embedded_config(llm.config))
    model.model.language_model.load_state_dict(llm.model.state_dict())
    model.lm_head.weight = model.model.language_model.embed_tokens.weight  # SmolLM2 ties them
    return model


def vision_state(model: LlavaForConditionalGeneration) -> dict[str, torch.Tensor]:
    """The trained part (tower + projector) of an embedded model, keyed relative to `model.model`."""
    return {k: v for k, v in model.model.state_dict().items() if k.startswith(VISION_PREFIXES)}


def load_vision(model: LlavaForConditionalGeneration, path: Path) -> dict:
    """Load tower + projector weights from `path` into `model`; returns the file's metadata."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    if not path.is_file():
        raise UsageError(f"embedded vision weights not found at {path}; reinstall ficoco-edge")
    state = load_file(str(path))
    expected = set(vision_state(model))
    if set(state) != expected:
        raise UsageError(f"{path} does not hold the embedded tower/projector (missing or extra tensors)")
    model.model.load_state_dict(state, strict=False)
    with safe_open(str(path), "pt") as f:
        return json.loads((f.metadata() or {}).get("training", "{}"))


def check_vision_file(path: Path) -> None:
    """Refuse, before the LLM loads (tens of seconds on first use), a file that does not hold the
    packaged tower's tensors by name: another checkpoint's weights, or not safetensors at all."""
    from safetensors import safe_open

    hint = "pass a tower file written by ficoco_edge.training.embedded, or a llava-hf checkpoint directory"
    try:
        with safe_open(str(path), "np") as f:
            names = set(f.keys())
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types for bad headers
        raise UsageError(f"{path} is not a readable .safetensors file ({str(exc).splitlines()[0][:120]}); {hint}") from None
    with safe_open(str(weights_path()), "np") as f:
        expected = set(f.keys())
    if names != expected:
        raise UsageError(f"{path} does not hold the embedded tower/projector ({len(names - expected)} of its "
                         f"{len(names)} tensors are not the tower's, {len(expected - names)} missing); {hint}")


def load_llm(dtype: torch.dtype = torch.float32) -> LlamaForCausalLM:
    return LlamaForCausalLM.from_pretrained(smollm2_dir(), dtype=dtype)


def load_embedded(weights: Path | None = None) -> LlavaForConditionalGeneration:
    """The embedded LLaVA in fp32 eval mode, tower + projector from `weights` (default: packaged)."""
    if weights is not None:
        check_vision_file(weights)
    model = build(load_llm())
    model.ficoco_training = load_vision(model, weights or weights_path())
    return model.eval()
