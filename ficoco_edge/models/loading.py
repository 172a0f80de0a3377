"""`load(name_or_path)`: the embedded model, a local llava-hf checkpoint, or a hub id."""

from __future__ import annotations

import json
import math
import re
from contextlib import contextmanager
from pathlib import Path

import torch

from ficoco_edge.errors import UsageError
from ficoco_edge.models.vqa import VisionLanguageModel
from ficoco_edge.runtime.preprocess import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, ClipPreprocess
from ficoco_edge.runtime.prompt import PromptFormat

EMBEDDED = "embedded"
LLAVA_15_TEMPLATE = "USER: <image>\n{question} ASSISTANT:"  # llava-hf's LLaVA-1.5 conversation format


HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}", re.ASCII)  # the hub's repo id rules
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
    if not name.strip():
        raise UsageError("--model is empty: use 'embedded', a local llava-hf checkpoint directory, or a hub id")
    looks_like_path = name.startswith(("/", ".", "~")) or name.endswith(".safetensors")
    if name == EMBEDDED:
        model = embedded_vlm()
    elif looks_like_path and not Path(name).expanduser().exists():
        raise UsageError(f"model {name} not found; pass an existing llava-hf directory or .safetensors file")
    elif name.endswith(".safetensors") and Path(name).expanduser().is_file():
        model = embedded_vlm(Path(name).expanduser().resolve())
    elif Path(name).expanduser().is_dir():
        local = str(Path(name).expanduser().resolve())  # what the manifest records: valid from any directory
        model = _llava_hf(local, local)
    elif HUB_ID.fullmatch(name) and "--" not in name and ".." not in name:
        model = _llava_hf(str(hub_snapshot(name)), name)
    else:
        raise UsageError(f"unknown model {name!r}: no such directory or .safetensors file, and not a hub id "
                         "(ORG/NAME of letters, digits, '-', '_', '.'); use 'embedded', a local llava-hf "
                         "checkpoint directory, or a hub id")
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
    there and complete (no network at all), else downloaded into it. Offline, or with the hub
    unreachable or silent, one clear error within seconds instead of retries or a hang."""
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        cached = Path(snapshot_download(repo_id, local_files_only=True))
        missing = snapshot_lacks(cached)
        if missing is None:
            return cached
        where = f"the Hugging Face cache holds an incomplete copy of {repo_id} (no {missing})"
    except LocalEntryNotFoundError:
        where = f"model {repo_id} is not in the local Hugging Face cache"
    advice = f"on a machine with hub access run `hf download {repo_id} --local-dir DIR`, copy DIR here and pass --model DIR"
    if constants.HF_HUB_OFFLINE:
        raise UsageError(f"{where} and HF_HUB_OFFLINE is set; {advice}")
    problem = hub_problem(repo_id, constants.ENDPOINT)
    if problem:
        raise UsageError(f"{where} and {problem}; {advice}")
    try:
        return Path(snapshot_download(repo_id, allow_patterns=list(HUB_FILES)))
    except (HfHubHTTPError, OSError, ValueError) as exc:
        raise UsageError(f"could not download {repo_id} from {constants.ENDPOINT} "
                         f"({str(exc).splitlines()[0][:160]}); check the id, or {advice}") from exc


def snapshot_lacks(directory: Path) -> str | None:
    """What a cached snapshot needs before it can load (config.json, its weight files), or None.
    An interrupted download leaves a snapshot without them."""
    if not (directory / "config.json").is_file():
        return "config.json"
    try:
        shards = set(json.loads((directory / "model.safetensors.index.json").read_text())["weight_map"].values())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        shards = {"model.safetensors"}
    missing = sorted(name for name in shards if not (directory / name).is_file())
    return ", ".join(missing) if missing else None


def hub_problem(repo_id: str, endpoint: str, timeout_s: float = 5.0) -> str | None:
    """Why the hub cannot serve `repo_id` (unreachable, silent past `timeout_s`, no such model),
    or None when it answers for it. Asks once through huggingface_hub, proxies included."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    try:
        HfApi(endpoint=endpoint).model_info(repo_id, timeout=timeout_s)
    except RepositoryNotFoundError:
        return f"{endpoint} has no model {repo_id} (or it is private: log in with `hf auth login`)"
    except HfHubHTTPError as exc:
        return f"{endpoint} answered {str(exc).splitlines()[0][:120]}"
    except Exception as exc:  # noqa: BLE001 - refused, timed out, DNS, proxy errors: httpx's and others alike
        reason = str(exc).splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
        return f"{endpoint} cannot be reached ({reason})"
    return None


@contextmanager
def _loading_bars(show: bool):
    """transformers draws a bar for every checkpoint it loads (shown only when asked for) and logs
    reports such as weight-shape mismatch tables, which our one-line errors replace."""
    from transformers.utils import logging as hf_logging

    shown, verbosity = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()
    (hf_logging.enable_progress_bar if show else hf_logging.disable_progress_bar)()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        (hf_logging.enable_progress_bar if shown else hf_logging.disable_progress_bar)()
        hf_logging.set_verbosity(verbosity)


def _llava_hf(directory: str, name: str) -> VisionLanguageModel:
    """The llava-hf checkpoint in `directory` (a local copy, or the hub cache's snapshot of `name`)."""
    from transformers import AutoTokenizer, LlavaForConditionalGeneration

    from ficoco_edge.models.llava import find_parts

    _check_llava_config(Path(directory))
    try:
        model = LlavaForConditionalGeneration.from_pretrained(directory, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - OSError, ValueError, safetensors' and size-mismatch errors alike
        reason = str(exc).splitlines()[0][:240].rstrip(".") if str(exc).strip() else type(exc).__name__
        if "ignore_mismatched_sizes" in reason:  # transformers' pointer to a report we keep quiet
            reason = "the sizes in config.json do not match the weights' shapes"
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
        found = f"model_type {kind!r}" if kind else "no model_type"
        raise UsageError(f"{directory} does not hold a LLaVA checkpoint (its config.json has {found}, not "
                         f"'llava'); {hint}")


def _preprocess_for(directory: Path, config) -> ClipPreprocess:
    """CLIP pre-processing from the checkpoint's preprocessor_config.json (absent or not a JSON
    object: the tower's size and CLIP's statistics); values the vision graph cannot take are refused."""
    size = config.vision_config.image_size
    path = directory / "preprocessor_config.json"
    try:
        cfg = json.loads(path.read_text())
    except (OSError, ValueError):
        cfg = {}
    cfg = cfg if isinstance(cfg, dict) else {}

    def edge(key: str, inner: str):
        value = cfg.get(key, size)
        return value.get(inner, size) if isinstance(value, dict) else value

    short, crop = edge("size", "shortest_edge"), edge("crop_size", "height")
    mean, std = cfg.get("image_mean", OPENAI_CLIP_MEAN), cfg.get("image_std", OPENAI_CLIP_STD)
    problems = [f"crop_size {crop!r} is not the vision tower's image_size {size}"] if crop != size else []
    if not (_whole(short) and short >= size):
        problems.append(f"size {short!r} is not a whole number >= the crop {size}")
    for key, value in (("image_mean", mean), ("image_std", std)):
        if not (isinstance(value, (list, tuple)) and len(value) == 3 and all(map(_number, value))):
            problems.append(f"{key} {value!r} is not 3 numbers")
        elif key == "image_std" and min(value) <= 0:
            problems.append(f"image_std {value!r} must be > 0")
    if problems:
        raise UsageError(f"{path}: {'; '.join(problems)}; fix it, or delete it to use the tower's defaults")
    return ClipPreprocess(int(short), int(crop), tuple(map(float, mean)), tuple(map(float, std)))


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
