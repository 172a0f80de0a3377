"""Backends that run an export's three graphs: onnxruntime (default) and PyTorch (reference, GPU);
onnxruntime on a GPU with the KV cache in GPU memory in ort_device.py, TensorRT engines in trt_backend.py.

Every backend offers the same calls, numpy in and numpy logits out; KV caches stay in the
backend's own memory (numpy arrays for onnxruntime on the CPU, torch tensors on the torch device,
CUDA buffers for onnxruntime on a GPU and for TensorRT):

    vision(pixel_values (1, 3, H, W))                  -> image_embeds (1, n_v, hidden)
    prefill(inputs_embeds (1, S, hidden), image_start) -> logits (V,), [key_0, value_0, ...] (1, kvh, S_l, d)
    decode(inputs_embeds (1, 1, hidden), position, KVCache) -> logits (V,), [new key_0, ...] (1, kvh, 1, d)
    zeros(shape)                                       -> a KV buffer in the cache dtype
    write_slots(buffer, at, src (1, kvh, n, d))        -> src written into slots at..at+n of buffer

The caches prefill and decode return may be the backend's own buffers, reused by its next call of
the same kind (TensorRT's are): the runtime copies them into the KV cache (KVCache.fill / append)
before calling again."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ficoco_edge.errors import UsageError
from ficoco_edge.manifest import ManifestError
from ficoco_edge.runtime.kv import KVCache, assign_slots

ORT_DTYPES = {"float": np.float32, "float16": np.float16, "double": np.float64, "int64": np.int64, "int32": np.int32}
DEVICES = ("auto", "cpu", "cuda")


def ort_providers(device: str, available: list[str]) -> list[str]:
    """Execution providers for `device`: auto prefers TensorRT, then CUDA, then the CPU."""
    if device not in DEVICES:
        raise UsageError(f"unknown device {device!r} for onnxruntime; choose one of: {', '.join(DEVICES)}")
    gpu = [p for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider") if p in available
           and (p != "TensorrtExecutionProvider" or tensorrt_loadable())]
    if device == "cuda" and not gpu:
        if gpu_package_shadowed():
            raise UsageError("onnxruntime-gpu is installed, but the CPU onnxruntime package's files replaced its module "
                             "(both ship `onnxruntime`): run `pip uninstall -y onnxruntime && pip install "
                             "--force-reinstall --no-deps onnxruntime-gpu`, or use --device cpu")
        raise UsageError("this onnxruntime has no CUDA or TensorRT provider; install onnxruntime-gpu or use --device cpu")
    return ([] if device == "cpu" else gpu) + ["CPUExecutionProvider"]


def gpu_package_shadowed() -> bool:
    """Whether the onnxruntime-gpu package is installed. Asked when the imported onnxruntime offers
    no GPU provider: then pip put the CPU package's files over it (both ship the same module, and
    ficoco-edge's base install depends on `onnxruntime`)."""
    from importlib import metadata

    try:
        metadata.version("onnxruntime-gpu")
    except metadata.PackageNotFoundError:
        return False
    return True


def tensorrt_loadable() -> bool:
    """Whether onnxruntime's TensorRT provider can start: onnxruntime-gpu lists it either way, and
    without TensorRT's library every session falls back to CUDA after printing an error. The
    provider's own library links the TensorRT it was built for (libnvinfer.so.10 for PyPI's
    onnxruntime-gpu, .so.8 for JetPack 5-6.0 builds): loading it is tried first, then .so.10."""
    import ctypes
    import importlib.util

    spec = importlib.util.find_spec("onnxruntime")
    capi = Path(spec.origin).parent / "capi" if spec and spec.origin else None
    provider = capi / "libonnxruntime_providers_tensorrt.so" if capi else None
    for library in ([str(provider)] if provider and provider.is_file() else []) + ["libnvinfer.so.10"]:
        try:  # the provider's library first; if it does not load on its own, the check used before it
            ctypes.CDLL(library)
            return True
        except OSError:
            continue
    return False


def check_threads(threads: int | None) -> None:
    """Refuse a thread count below 1 or above 4 per CPU (thousands of threads only thrash)."""
    most = 4 * (os.cpu_count() or 1)
    if threads is not None and not 1 <= threads <= most:
        raise UsageError(f"--threads must be between 1 and {most} (4 per CPU here), got {threads}")


def session_options(ort, threads: int | None):
    """Options for each of the export's sessions.

    Every session has its own intra-op pool, whose threads spin between the nodes of a run (fast
    dispatch of many small nodes) but stop spinning when the run ends: otherwise the vision
    session's idle threads keep spinning while the prefill session's threads want the same cores,
    which on a 2-core machine made vision ~1.8x and prefill ~1.4x slower. (onnxruntime's global
    thread pool would avoid that too, but once created it makes every other session of the process
    that asks for its own pool fail.)
    """
    check_threads(threads)
    options = ort.SessionOptions()
    options.log_severity_level = 3  # warnings about unused initializers are noise to a user
    options.add_session_config_entry("session.force_spinning_stop", "1")
    if threads is not None:
        options.intra_op_num_threads = threads
    return options


def open_session(ort, path: Path, options, providers: list[str]):
    """An onnxruntime session over one graph file; a file it cannot load is a broken export."""
    try:
        return ort.InferenceSession(str(path), options, providers=providers)
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own untyped errors for bad graphs
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ManifestError(f"onnxruntime could not load {path} ({reason}); re-export with "
                            f"`ficoco-edge export --force`") from exc


def shares_prepacked_weights(version: str) -> bool:
    """Whether this onnxruntime keeps one pre-packed copy of a weight that several kernels of a
    session use (from 1.21: the embedded fp32 LLM as one session kept 598 MB resident on 1.21.0,
    1102 MB on 1.20.1, as much as two sessions); only then is the combined LLM graph worth running."""
    major, minor = (int(part) for part in version.split(".")[:2])
    return (major, minor) >= (1, 21)


class SharedLlmSession:
    """prefill and decode run as the two branches of the export's combined LLM graph
    (export/combine.py): one session, so onnxruntime pre-packs the LLM's weights once instead of
    once per graph. The idle branch's inputs get small zero tensors of their declared shapes."""

    def __init__(self, session, spec: dict, graphs: dict):
        self.session, self.switch = session, spec["switch"]
        self.prefix = {"prefill": "", "decode": spec["decode_prefix"]}
        self.idle = {branch: {self.prefix[branch] + i["name"]: _placeholder(i) for i in graphs[branch]["inputs"]}
                     for branch in self.prefix}
        self.output_names = {branch: [o["name"] for o in graphs[branch]["outputs"]] for branch in self.prefix}

    def feeds(self, branch: str, feeds: dict) -> dict:
        """The combined graph's feeds for graph `branch`'s own: its names prefixed, the switch, and
        placeholders for the other branch's inputs."""
        other = "decode" if branch == "prefill" else "prefill"
        named = {self.prefix[branch] + name: value for name, value in feeds.items()}
        return {self.switch: np.array(branch == "prefill"), **self.idle[other], **named}

    def run(self, branch: str, feeds: dict) -> list[np.ndarray]:
        """Graph `branch`'s outputs, in its order, for its own feeds: prefill -> logits (1, V), then
        key_l / value_l (1, kvh, S_l, d); decode -> logits (1, V), then new key_l / value_l (1, kvh, 1, d)."""
        return self.session.run(None, self.feeds(branch, feeds))


def _placeholder(spec: dict) -> np.ndarray:
    """Zeros for a graph input described in the manifest: its dtype, its fixed sizes, 1 elsewhere."""
    return np.zeros([d if isinstance(d, int) else 1 for d in spec["shape"]], ORT_DTYPES[spec["dtype"]])


class OrtBackend:
    """onnxruntime sessions over the export's vision / prefill / decode graphs."""

    name = "onnxruntime"
    kv_location = "host"  # numpy caches; ort_device.OrtDeviceBackend keeps them in GPU memory

    def __init__(self, directory: Path, manifest: dict, device: str = "auto", threads: int | None = None,
                 one_llm_session: bool = True):
        """one_llm_session: run prefill and decode through the export's llm.onnx where it saves memory
        (_combined_saves_memory: CPU on onnxruntime >= 1.21, CUDA); False opens them as two
        sessions (on the CPU decode up to ~10% faster, the LLM's weights held twice)."""
        import onnxruntime as ort

        options = session_options(ort, threads)
        self.providers = ort_providers(device, ort.get_available_providers())
        if self.providers[0] != "CPUExecutionProvider":  # "onnxruntime-cuda": where it runs, on the status line
            self.name = f"onnxruntime-{self.providers[0].removesuffix('ExecutionProvider').lower()}"
        combined = manifest.get("llm_graph") if one_llm_session and self._combined_saves_memory(ort) else None
        opened = {"vision": manifest["graphs"]["vision"], "llm": combined} if combined else manifest["graphs"]
        self.loaded_graphs = list(opened.values())  # what Runtime.weight_bytes counts
        self.sessions = {name: open_session(ort, Path(directory) / spec["file"], options, self.providers)
                         for name, spec in opened.items()}
        self.llm = SharedLlmSession(self.sessions["llm"], combined, manifest["graphs"]) if combined else None
        self.input_dtypes = {name: {i["name"]: ORT_DTYPES[i["dtype"]] for i in spec["inputs"]}
                             for name, spec in manifest["graphs"].items()}
        self.kv_dtype = self.input_dtypes["decode"]["past_key_0"]
        self.kv_itemsize = np.dtype(self.kv_dtype).itemsize

    def _combined_saves_memory(self, ort) -> bool:
        """On the CPU where onnxruntime pre-packs a shared weight once (>= 1.21); on CUDA always, since
        every session copies its initializers into GPU memory. Not with onnxruntime's TensorRT provider,
        which has not been run on the combined graph's If."""
        if self.providers[0] == "CPUExecutionProvider":
            return shares_prepacked_weights(ort.__version__)
        return self.providers[0] == "CUDAExecutionProvider"

    def _run(self, graph: str, feeds: dict) -> list[np.ndarray]:
        dtypes = self.input_dtypes[graph]  # inputs a graph does not use were dropped at export
        feeds = {k: np.asarray(v, dtypes[k]) for k, v in feeds.items() if k in dtypes}
        if self.llm is not None and graph != "vision":
            return self.llm.run(graph, feeds)
        return self.sessions[graph].run(None, feeds)

    def vision(self, pixel_values: np.ndarray) -> np.ndarray:
        return self._run("vision", {"pixel_values": pixel_values})[0].astype(np.float32, copy=False)

    def prefill(self, inputs_embeds: np.ndarray, image_start: int) -> tuple[np.ndarray, list]:
        logits, *caches = self._run("prefill", {"inputs_embeds": inputs_embeds, "image_start": np.array(image_start)})
        return logits.reshape(-1), caches

    def decode(self, inputs_embeds: np.ndarray, position: int, cache: KVCache) -> tuple[np.ndarray, list]:
        feeds = {"inputs_embeds": inputs_embeds, "position": np.array([[position]]), "past_lengths": cache.lengths,
                 **cache.feeds()}
        logits, *new = self._run("decode", feeds)
        return logits.reshape(-1), new

    def zeros(self, shape: tuple[int, ...]) -> np.ndarray:
        return np.zeros(shape, self.kv_dtype)

    write_slots = staticmethod(assign_slots)


class TorchBackend:
    """The patched PyTorch model run as the same three graphs: the reference, and the GPU path.

    Loads the export's model by name (or `model`) and applies the manifest's method and schedule.
    Imports torch and transformers, which the onnxruntime path never does.
    """

    name = "torch"

    def __init__(self, manifest: dict, device: str = "cpu", dtype: str = "fp32", model: str | None = None):
        import torch

        from ficoco_edge.export.graphs import DecodeGraph, PrefillGraph, VisionGraph
        from ficoco_edge.models.llava import apply, image_tokens_for
        from ficoco_edge.models.loading import load
        from ficoco_edge.reduction.schedule import Schedule

        if device.startswith("cuda") and not torch.cuda.is_available():
            raise UsageError(f"--device {device}: no CUDA GPU is visible; use --device cpu")
        self.torch, self.device = torch, "cpu" if device == "auto" else device
        self.kv_dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[dtype]
        self.kv_itemsize = self.kv_dtype.itemsize
        vlm = load(model or manifest["model"], self.device, self.kv_dtype)
        apply(vlm.model, manifest["method"], Schedule(**manifest["schedule"]))
        if image_tokens_for(vlm.model) != manifest["visual_tokens"]:
            raise UsageError(f"model {vlm.name} gives {image_tokens_for(vlm.model)} visual tokens, the export "
                             f"{manifest['visual_tokens']}: pass the model the export was made from")
        self.graphs = (VisionGraph(vlm.model), PrefillGraph(vlm.model, manifest["visual_tokens"]), DecodeGraph(vlm.model))

    def _tensor(self, array: np.ndarray):
        tensor = self.torch.from_numpy(np.ascontiguousarray(array)).to(self.device)
        return tensor.to(self.kv_dtype) if tensor.is_floating_point() else tensor

    def _logits(self, logits) -> np.ndarray:
        return logits.float().cpu().numpy().reshape(-1)

    def vision(self, pixel_values: np.ndarray) -> np.ndarray:
        with self.torch.inference_mode():
            return self.graphs[0](self._tensor(pixel_values)).float().cpu().numpy()

    def prefill(self, inputs_embeds: np.ndarray, image_start: int) -> tuple[np.ndarray, list]:
        with self.torch.inference_mode():
            logits, *caches = self.graphs[1](self._tensor(inputs_embeds), self.torch.tensor(image_start))
        return self._logits(logits), caches

    def decode(self, inputs_embeds: np.ndarray, position: int, cache: KVCache) -> tuple[np.ndarray, list]:
        past = [b for pair in zip(cache.keys, cache.values) for b in pair]
        with self.torch.inference_mode():
            logits, *new = self.graphs[2](self._tensor(inputs_embeds), self._tensor(np.array([[position]])),
                                          self._tensor(cache.lengths), *past)
        return self._logits(logits), new

    def zeros(self, shape: tuple[int, ...]):
        return self.torch.zeros(shape, dtype=self.kv_dtype, device=self.device)

    write_slots = staticmethod(assign_slots)
