"""`load(name_or_path)`: the embedded model, a local llava-hf checkpoint, or a hub id."""

from __future__ import annotations

import json
import os
import socket
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

import torch

from ficoco_edge.errors import UsageError
from ficoco_edge.models.vqa import VisionLanguageModel
from ficoco_edge.runtime.preprocess import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, ClipPreprocess
from ficoco_edge.runtime.prompt import PromptFormat

EMBEDDED = "embedded"
LLAVA_15_TEMPLATE = "USER: <image>\n{question} ASSISTANT:"  # llava-hf's LLaVA-1.5 conversation format


# what a llava-hf checkpoint needs from the hub (weights, configs, tokenizer, chat template)
HUB_FILES = ("*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.tiktoken")


def load(name: str = EMBEDDED, device: str = "cpu", dtype: torch.dtype = torch.float32,
         progress: bool = False) -> VisionLanguageModel:
    """Load a model: "embedded", an embedded tower/projector .safetensors file (trained by
    `ficoco_edge.training.embedded`), a local llava-hf directory, or a Hugging Face hub id.
    progress: show transformers' weight-loading bar."""
    with _loading_bars(progress):
        return _load(name, device, dtype)


def _load(name: str, device: str, dtype: torch.dtype) -> VisionLanguageModel:
    looks_like_path = name.startswith(("/", ".", "~")) or name.endswith(".safetensors")
    if name == EMBEDDED:
        model = embedded_vlm()
    elif looks_like_path and not Path(name).expanduser().exists():
        raise UsageError(f"model {name} not found; pass an existing llava-hf directory or .safetensors file")
    elif name.endswith(".safetensors"):
        model = embedded_vlm(Path(name).expanduser())
    elif Path(name).expanduser().is_dir():
        model = _llava_hf(str(Path(name).expanduser()), str(Path(name).expanduser()))
    elif name.count("/") == 1 and not Path(name).suffix:
        model = _llava_hf(str(hub_snapshot(name)), name)
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


def hub_snapshot(repo_id: str) -> Path:
    """The local directory of hub checkpoint `repo_id`: from the Hugging Face cache when it is
    there (no network at all), else downloaded into it. Offline, or with the hub unreachable, one
    clear error at once instead of huggingface_hub's ~25 s of retries."""
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except LocalEntryNotFoundError:
        pass
    advice = f"on a machine with hub access run `hf download {repo_id} --local-dir DIR`, copy DIR here and pass --model DIR"
    if constants.HF_HUB_OFFLINE:
        raise UsageError(f"model {repo_id} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set; {advice}")
    if not hub_reachable(constants.ENDPOINT):
        raise UsageError(f"model {repo_id} is not in the local Hugging Face cache and {constants.ENDPOINT} cannot "
                         f"be reached; {advice}")
    try:
        return Path(snapshot_download(repo_id, allow_patterns=list(HUB_FILES)))
    except (HfHubHTTPError, OSError, ValueError) as exc:
        raise UsageError(f"could not download {repo_id} from {constants.ENDPOINT} "
                         f"({str(exc).splitlines()[0][:160]}); check the id, or {advice}") from exc


def hub_reachable(endpoint: str, timeout_s: float = 3.0) -> bool:
    """Whether a TCP connection to the hub opens; with a proxy configured, assume so (requests
    goes through the proxy, which this check cannot see)."""
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    url = urlparse(endpoint)
    try:
        port = url.port or (80 if url.scheme == "http" else 443)
        socket.create_connection((url.hostname, port), timeout=timeout_s).close()
    except OSError:  # name resolution failed, refused, timed out
        return False
    return True


@contextmanager
def _loading_bars(show: bool):
    """transformers draws a bar for every checkpoint it loads: shown only when asked for."""
    from transformers.utils import logging as hf_logging

    shown = hf_logging.is_progress_bar_enabled()
    (hf_logging.enable_progress_bar if show else hf_logging.disable_progress_bar)()
    try:
        yield
    finally:
        (hf_logging.enable_progress_bar if shown else hf_logging.disable_progress_bar)()


def _llava_hf(directory: str, name: str) -> VisionLanguageModel:
    """The llava-hf checkpoint in `directory` (a local copy, or the hub cache's snapshot of `name`)."""
    from transformers import AutoTokenizer, LlavaForConditionalGeneration

    from ficoco_edge.models.llava import find_parts

    _check_llava_config(Path(directory))
    try:
        model = LlavaForConditionalGeneration.from_pretrained(directory, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
    except (OSError, ValueError) as exc:
        reason = str(exc).splitlines()[0][:160].rstrip(".") if str(exc).strip() else type(exc).__name__
        raise UsageError(
            f"could not load a LLaVA checkpoint from {directory}: {reason}. Pass a directory holding a llava-hf "
            "checkpoint (config.json, *.safetensors, tokenizer files; `hf download <id> --local-dir DIR` makes one)"
        ) from exc
    find_parts(model)
    bos = tokenizer.bos_token_id if getattr(tokenizer, "add_bos_token", True) else None
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    prompt = PromptFormat(LLAVA_15_TEMPLATE, model.config.image_token_id, (eos,), pad, bos)
    return VisionLanguageModel(name, model, tokenizer, _preprocess_for(Path(directory), model.config), prompt)


def _check_llava_config(directory: Path) -> None:
    """Refuse a directory that holds no LLaVA config before transformers tries (and warns)."""
    hint = "pass a llava-hf checkpoint directory (`hf download <id> --local-dir DIR` makes one)"
    try:
        config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{directory} has no config.json; {hint}") from None
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read {directory / 'config.json'} ({exc}); {hint}") from None
    kind = config.get("model_type") if isinstance(config, dict) else None
    if kind != "llava":
        raise UsageError(f"{directory} holds a {kind or 'unknown'} checkpoint, not LLaVA (config.json "
                         f"model_type 'llava'); {hint}")


def _preprocess_for(directory: Path, config) -> ClipPreprocess:
    """CLIP pre-processing from the checkpoint's preprocessor_config.json, else the tower's size."""
    size = config.vision_config.image_size
    try:
        cfg = json.loads((directory / "preprocessor_config.json").read_text())
    except (OSError, ValueError):
        return ClipPreprocess(size, size)
    if not isinstance(cfg, dict):
        return ClipPreprocess(size, size)
    short = cfg.get("size", {}).get("shortest_edge", size) if isinstance(cfg.get("size"), dict) else cfg.get("size", size)
    crop = cfg.get("crop_size", {}).get("height", size) if isinstance(cfg.get("crop_size"), dict) else cfg.get("crop_size", size)
    return ClipPreprocess(int(short), int(crop), tuple(cfg.get("image_mean", OPENAI_CLIP_MEAN)),
                          tuple(cfg.get("image_std", OPENAI_CLIP_STD)))
