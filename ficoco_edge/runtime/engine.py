"""`Runtime`: an export directory turned into answers. Needs numpy, onnxruntime, tokenizers, Pillow.

    rt = Runtime.load("exports/embedded-ficoco-l-b4.2-fp32")
    answer = rt.answer("cat.jpg", "What animal is this?", on_text=print)

The manifest is the only thing shared with the exporter: graph files and their I/O dtypes, the
per-layer visual token counts, the prompt format, pre-processing and tokenizer.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from ficoco_edge.errors import UsageError
from ficoco_edge.manifest import read_manifest
from ficoco_edge.runtime.images import open_image
from ficoco_edge.runtime.kv import KVCache, kv_bytes_needed
from ficoco_edge.runtime.preprocess import ClipPreprocess
from ficoco_edge.runtime.prompt import PromptFormat, check_question
from ficoco_edge.runtime.sampling import Sampler

BACKENDS = ("ort", "torch", "trt")
MAX_PROMPT_TOKENS = 1024  # text tokens around the image span; longer questions are refused


@dataclass
class Timings:
    """Milliseconds; ttft: image file in -> first token chosen (load, pre-process, vision, prefill)."""

    vision_ms: float = 0.0
    prefill_ms: float = 0.0
    ttft_ms: float = 0.0
    decode_ms: float = 0.0
    decode_tokens: int = 0

    @property
    def decode_tok_s(self) -> float:
        return self.decode_tokens / (self.decode_ms / 1e3) if self.decode_tokens else 0.0


@dataclass
class Answer:
    text: str
    token_ids: list[int]
    kv_bytes: int  # allocated for this request
    prefill_lengths: list[int]  # S_l: tokens layer l cached after the prefill
    timings: Timings = field(default_factory=Timings)


class Runtime:
    """A loaded export: backend sessions, tokenizer, prompt format and pre-processing."""

    def __init__(self, directory: Path, manifest: dict, backend, tokenizer):
        self.directory, self.manifest, self.backend, self.tokenizer = Path(directory), manifest, backend, tokenizer
        self.prompt = PromptFormat(**{**manifest["prompt"], "stop_ids": tuple(manifest["prompt"]["stop_ids"])})
        pre = manifest["preprocess"]
        self.preprocess = ClipPreprocess(pre["size"], pre["crop"], tuple(pre["mean"]), tuple(pre["std"]))
        self.table = np.load(self.directory / manifest["embed_tokens"], mmap_mode="r")  # rows read on demand

    @classmethod
    def load(cls, directory: str | Path, backend: str = "ort", device: str = "auto", threads: int | None = None,
             verify: bool = True, model: str | None = None, dtype: str = "fp32",
             one_llm_session: bool = True) -> "Runtime":
        """Check the manifest (schema, sha256 of every file), then open the backend.

        backend: ort (onnxruntime; device auto|cpu|cuda, threads, one_llm_session: see OrtBackend) or
        torch (the patched PyTorch model, `model` overriding the manifest's model name, device
        cpu|cuda, dtype fp32|bf16|fp16).
        """
        directory = Path(directory)
        if directory.exists() and not directory.is_dir():
            raise UsageError(f"export {directory} is a file; pass the directory `ficoco-edge export` wrote")
        if not directory.is_dir():
            raise UsageError(f"export {directory} not found; create one with `ficoco-edge export`")
        manifest = read_manifest(directory, verify)
        opened = open_backend(directory, manifest, backend, device, threads, model, dtype, one_llm_session)
        return cls(directory, manifest, opened, _tokenizer(directory / manifest["tokenizer"]))

    @property
    def layers(self) -> int:
        return self.manifest["llm"]["layers"]

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def prompt_ids(self, question: str) -> np.ndarray:
        """The prompt's token ids (s,) with the export's image span; refuses empty or over-long questions."""
        check_question(question)
        ids = np.array(self.prompt.ids(self.encode, question, self.manifest["visual_tokens"]), dtype=np.int64)
        if len(ids) - self.manifest["visual_tokens"] > MAX_PROMPT_TOKENS:
            raise UsageError(f"the prompt is {len(ids) - self.manifest['visual_tokens']} text tokens; "
                             f"at most {MAX_PROMPT_TOKENS}: shorten the question")
        return ids

    def prefill_lengths(self, text_tokens: int) -> list[int]:
        """S_l for a prompt of `text_tokens` text tokens: text + layer l's visual tokens."""
        return [text_tokens + v for v in self.manifest["llm_visual_tokens_per_layer"]]

    def kv_bytes(self, text_tokens: int, max_new_tokens: int) -> int:
        """KV bytes a request allocates: layer l holds S_l + max_new_tokens slots."""
        llm = self.manifest["llm"]
        return kv_bytes_needed(self.prefill_lengths(text_tokens), max_new_tokens, llm["kv_heads"], llm["head_dim"],
                               self.backend.kv_itemsize)

    def weight_bytes(self) -> int:
        """Bytes the runtime loads: each graph file its backend opened with the weights it reads from
        the shared weights file (every session holds its own copy), and the embedding table."""
        graphs = getattr(self.backend, "loaded_graphs", None) or list(self.manifest["graphs"].values())
        files = sum((self.directory / n).stat().st_size for n in [g["file"] for g in graphs])
        shared = sum(g.get("weights_bytes", 0) for g in graphs)  # 0 in exports written before the file
        return files + shared + (self.directory / self.manifest["embed_tokens"]).stat().st_size

    def check_positions(self, prompt_tokens: int, max_new_tokens: int) -> None:
        """Refuse a request whose last token would sit past the model's positions (its RoPE table
        in the graphs ends there; exports made before 0.4.0 do not record it)."""
        limit = self.manifest["llm"].get("max_positions")
        if limit is not None and prompt_tokens + max_new_tokens > limit:
            raise UsageError(f"the prompt ({prompt_tokens} tokens with the image) + --max-new-tokens {max_new_tokens} "
                             f"exceeds the model's {limit} positions; ask for fewer new tokens")

    def check_memory(self, text_tokens: int, max_new_tokens: int, limit_mb: float | None) -> None:
        """Refuse up front a request whose weights + KV cache exceed `limit_mb` (decimal MB)."""
        if limit_mb is None:
            return
        check_memory_limit(limit_mb)
        weights, kv = self.weight_bytes(), self.kv_bytes(text_tokens, max_new_tokens)
        if weights + kv > limit_mb * 1e6:
            raise UsageError(f"needs {(weights + kv) / 1e6:.1f} MB (weights {weights / 1e6:.1f} MB + KV cache "
                             f"{kv / 1e6:.2f} MB for {max_new_tokens} new tokens) > --memory-limit {limit_mb:g} MB; "
                             f"use a smaller --quant or budget, or fewer --max-new-tokens")

    def answer(self, image: str | Path | Image.Image, question: str, max_new_tokens: int = 32,
               sampler: Sampler | None = None, on_text: Callable[[str], None] | None = None,
               memory_limit_mb: float | None = None, ignore_stop: bool = False) -> Answer:
        """Answer `question` about `image` (a path or a PIL image); on_text receives text as it is made.
        ignore_stop: generate exactly max_new_tokens (benchmarks of decode speed)."""
        if max_new_tokens < 1:
            raise UsageError(f"--max-new-tokens must be >= 1, got {max_new_tokens}")
        start = time.perf_counter()
        ids = self.prompt_ids(question)
        n_text = len(ids) - self.manifest["visual_tokens"]
        self.check_memory(n_text, max_new_tokens, memory_limit_mb)
        self.check_positions(len(ids), max_new_tokens)
        picture = image if isinstance(image, Image.Image) else open_image(image)
        timings = Timings()
        embeds, image_start = self.embed_prompt(ids, self.preprocess([picture]), timings)
        tick = time.perf_counter()
        logits, caches = self.backend.prefill(embeds, image_start)
        cache = KVCache.allocate(self.prefill_lengths(n_text), max_new_tokens, self.manifest["llm"]["kv_heads"],
                                 self.manifest["llm"]["head_dim"], None, lambda shape, _: self.backend.zeros(shape),
                                 self.backend.write_slots)
        cache.fill(caches)
        sampler = sampler or Sampler()
        tokens = [sampler(logits)]
        timings.prefill_ms = (time.perf_counter() - tick) * 1e3
        timings.ttft_ms = (time.perf_counter() - start) * 1e3
        stops = () if ignore_stop else self.prompt.stop_ids
        self._decode(tokens, cache, len(ids), max_new_tokens, sampler, timings, _Streamer(self, on_text), stops)
        end = next((i for i, t in enumerate(tokens) if t in self.prompt.stop_ids), len(tokens))
        text = self.tokenizer.decode(tokens[:end], skip_special_tokens=True).strip()
        return Answer(text, tokens, cache.nbytes, self.prefill_lengths(n_text), timings)

    def embed_prompt(self, ids: np.ndarray, pixels: np.ndarray, timings: Timings) -> tuple[np.ndarray, int]:
        """ids (s,) with one image span, pixels (1, 3, H, W) -> inputs_embeds (1, s, hidden), span start."""
        tick = time.perf_counter()
        image = self.backend.vision(pixels)
        timings.vision_ms = (time.perf_counter() - tick) * 1e3
        start, end = self.prompt.image_span(ids.tolist())
        parts = [self.table[ids[:start]][None], image.astype(np.float32, copy=False), self.table[ids[end:]][None]]
        return np.concatenate(parts, 1).astype(np.float32, copy=False), start

    def _decode(self, tokens: list[int], cache: KVCache, position: int, max_new_tokens: int, sampler: Sampler,
                timings: Timings, stream: "_Streamer", stops: tuple[int, ...]) -> None:
        """Append tokens until a stop token or max_new_tokens; streams each through `stream`."""
        tick = time.perf_counter()
        stream(tokens)
        while tokens[-1] not in stops and len(tokens) < max_new_tokens:
            logits, new = self.backend.decode(self.table[[tokens[-1]]][None], position, cache)
            cache.append(new)
            position += 1
            tokens.append(sampler(logits))
            stream(tokens)
        timings.decode_tokens = len(tokens) - 1
        timings.decode_ms = (time.perf_counter() - tick) * 1e3


class _Streamer:
    """Calls on_text with the text each new token adds (decoding the whole answer so far, so
    multi-byte characters split across tokens come out whole)."""

    def __init__(self, runtime: Runtime, on_text: Callable[[str], None] | None):
        self.runtime, self.on_text, self.sent = runtime, on_text, ""

    def __call__(self, tokens: list[int]) -> None:
        if self.on_text is None:
            return
        ids = [t for t in tokens if t not in self.runtime.prompt.stop_ids]
        text = self.runtime.tokenizer.decode(ids, skip_special_tokens=True).lstrip()
        if text != self.sent and text.startswith(self.sent) and not text.endswith("\ufffd"):
            self.on_text(text[len(self.sent):])
            self.sent = text


def check_memory_limit(limit_mb: float | None) -> None:
    if limit_mb is not None and not (math.isfinite(limit_mb) and limit_mb > 0):
        raise UsageError(f"--memory-limit must be a positive number of MB, got {limit_mb}")


def open_backend(directory: Path, manifest: dict, backend: str, device: str, threads: int | None,
                 model: str | None, dtype: str, one_llm_session: bool = True):
    from ficoco_edge.runtime import backends

    if backend == "ort":
        from ficoco_edge.runtime.ort_device import open_ort

        opened = open_ort(directory, manifest, device, threads, one_llm_session)
    elif backend == "torch":
        opened = backends.TorchBackend(manifest, "cpu" if device == "auto" else device, dtype, model)
    elif backend == "trt":
        from ficoco_edge.runtime.trt_backend import TrtBackend

        opened = TrtBackend(directory, manifest)
    else:
        raise UsageError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
    return opened


def _tokenizer(path: Path):
    from tokenizers import Tokenizer

    try:
        return Tokenizer.from_file(str(path))
    except Exception as exc:  # tokenizers raises a bare Exception on a bad file
        raise UsageError(f"{path} is not a tokenizer.json ({exc}); re-export with `ficoco-edge export --force`") from None
