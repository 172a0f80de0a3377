"""`load(name_or_path)`: the embedded model, a local llava-hf checkpoint, or a hub id."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ficoco_edge.errors import UsageError
from ficoco_edge.models.vqa import VisionLanguageModel
from ficoco_edge.runtime.preprocess import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, ClipPreprocess
from ficoco_edge.runtime.prompt import PromptFormat

EMBEDDED = "embedded"
LLAVA_15_TEMPLATE = "USER: <image>\n{question} ASSISTANT:"  # llava-hf's LLaVA-1.5 conversation format


def load(name: str = EMBEDDED, device: str = "cpu", dtype: torch.dtype = torch.float32) -> VisionLanguageModel:
    """Load a model: "embedded", an embedded tower/projector .safetensors file (trained by
    `ficoco_edge.training.embedded`), a local llava-hf directory, or a Hugging Face hub id."""
    looks_like_path = name.startswith(("/", ".", "~")) or name.endswith(".safetensors")
    if name == EMBEDDED:
        model = embedded_vlm()
    elif looks_like_path and not Path(name).expanduser().exists():
        raise UsageError(f"model {name} not found; pass an existing llava-hf directory or .safetensors file")
    elif name.endswith(".safetensors"):
        model = embedded_vlm(Path(name).expanduser())
    elif Path(name).expanduser().is_dir():
        model = _llava_hf(str(Path(name).expanduser()), local_only=True)
    elif name.count("/") == 1 and not Path(name).suffix:
        model = _llava_hf(name, local_only=False)
    else:
        raise UsageError(f"unknown model {name!r}: use 'embedded', a local llava-hf checkpoint directory, or a hub id")
    model.model.to(device=device, dtype=dtype).eval()
    return model


def embedded_vlm(weights: Path | None = None, trained: bool = True) -> VisionLanguageModel:
    """The embedded model with the packaged tower (or `weights`); `trained=False`: a fresh tower."""
    from transformers import AutoTokenizer

    from ficoco_edge.models import embedded
    from ficoco_edge.models.smollm import smollm2_dir

    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir())
    model = embedded.load_embedded(weights) if trained else embedded.build(embedded.load_llm())
    return VisionLanguageModel(str(weights or EMBEDDED), model, tokenizer, ClipPreprocess(), embedded.PROMPT)


def _llava_hf(source: str, local_only: bool) -> VisionLanguageModel:
    from transformers import AutoTokenizer, LlavaForConditionalGeneration

    from ficoco_edge.models.llava import find_parts

    try:
        model = LlavaForConditionalGeneration.from_pretrained(source, local_files_only=local_only)
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local_only)
    except (OSError, ValueError) as exc:
        where = f"the directory {source}" if local_only else f"the Hugging Face hub or its local cache ({source})"
        raise UsageError(
            f"could not load a LLaVA checkpoint from {where}: {str(exc).splitlines()[0][:160]}. "
            "On a machine with hub access run `hf download <id> --local-dir DIR`, copy DIR here and pass --model DIR"
        ) from exc
    find_parts(model)
    bos = tokenizer.bos_token_id if getattr(tokenizer, "add_bos_token", True) else None
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    prompt = PromptFormat(LLAVA_15_TEMPLATE, model.config.image_token_id, (eos,), pad, bos)
    return VisionLanguageModel(source, model, tokenizer, _preprocess_for(source, model.config, local_only), prompt)


def _preprocess_for(source: str, config, local_only: bool) -> ClipPreprocess:
    """CLIP pre-processing from the checkpoint's preprocessor_config.json, else the tower's size."""
    size = config.vision_config.image_size
    try:
        from transformers.utils import cached_file

        path = cached_file(source, "preprocessor_config.json", local_files_only=local_only)
        cfg = json.loads(Path(path).read_text())
    except (OSError, ValueError, TypeError):
        return ClipPreprocess(size, size)
    short = cfg.get("size", {}).get("shortest_edge", size) if isinstance(cfg.get("size"), dict) else cfg.get("size", size)
    crop = cfg.get("crop_size", {}).get("height", size) if isinstance(cfg.get("crop_size"), dict) else cfg.get("crop_size", size)
    return ClipPreprocess(int(short), int(crop), tuple(cfg.get("image_mean", OPENAI_CLIP_MEAN)),
                          tuple(cfg.get("image_std", OPENAI_CLIP_STD)))
