"""onnxruntime on a GPU with the KV cache in GPU memory.

With the CUDA (or TensorRT) execution provider, plain `session.run` takes and returns numpy arrays:
every decode step would copy each layer's whole cache to the GPU and the new key/value back. Here
the sessions run through IO binding instead: the prefill's caches stay where they were computed,
are copied once into the preallocated per-layer buffers (device to device), decode binds those
buffers as its past inputs directly, and each step's new key/value are written into their slot
with one strided device-to-device copy per buffer (cuda.write_slots). Only the embedding row goes
in and the logits come out through host memory.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ficoco_edge.errors import UsageError
from ficoco_edge.runtime.backends import OrtBackend, ort_providers
from ficoco_edge.runtime.cuda import Cuda, import_cudart, write_slots
from ficoco_edge.runtime.kv import KVCache


class BoundValue:
    """An OrtValue in the sessions' memory, seen as the buffer cuda.write_slots and KVCache use."""

    def __init__(self, value, cuda: Cuda, dtype):
        self.value, self.cuda, self.dtype = value, cuda, np.dtype(dtype)
        self.shape = tuple(value.shape())
        self.nbytes = int(np.prod(self.shape)) * self.dtype.itemsize
        self.ptr = value.data_ptr()

    def numpy(self) -> np.ndarray:
        return self.value.numpy()


class OrtDeviceBackend(OrtBackend):
    """OrtBackend whose prefill and decode keep the KV cache in `memory` (onnxruntime's device name
    and id: ("cuda", 0) on a GPU; tests run the same bindings on ("cpu", 0)). With one_llm_session,
    prefill and decode run as the branches of the export's llm.onnx (backends.SharedLlmSession)."""

    def __init__(self, directory: Path, manifest: dict, device: str, threads: int | None, cuda: Cuda,
                 memory: tuple[str, int] = ("cuda", 0), one_llm_session: bool = True):
        super().__init__(directory, manifest, device, threads, one_llm_session)
        self.cuda, self.memory = cuda, memory
        self.kv_location = memory[0]

    def _bound_run(self, graph: str, feeds: dict, on_device) -> dict:
        """Run `graph`: BoundValue feeds are bound where they are, numpy ones from host memory;
        outputs for which on_device(name) holds stay in self.memory (OrtValues), the rest come back
        as numpy arrays, all under `graph`'s own names."""
        dtypes = self.input_dtypes[graph]
        feeds = {k: v if isinstance(v, BoundValue) else np.asarray(v, dtypes[k], order="C")
                 for k, v in feeds.items() if k in dtypes}  # inputs a graph does not use were dropped at export
        if self.llm is not None and graph != "vision":
            session, feeds, names = self.llm.session, self.llm.feeds(graph, feeds), self.llm.output_names[graph]
        else:
            session = self.sessions[graph]
            names = [o.name for o in session.get_outputs()]
        binding = session.io_binding()
        for name, value in feeds.items():
            if isinstance(value, BoundValue):
                binding.bind_ortvalue_input(name, value.value)
            else:
                binding.bind_cpu_input(name, value)
        for name, output in zip(names, session.get_outputs()):
            binding.bind_output(output.name, *(self.memory if on_device(name) else ("cpu", 0)))
        session.run_with_iobinding(binding)
        binding.synchronize_outputs()  # before cudaMemcpy2D on the legacy stream reads them
        values = binding.get_outputs()
        return {name: BoundValue(v, self.cuda, self.kv_dtype) if on_device(name) else v.numpy()
                for name, v in zip(names, values)}

    def prefill(self, inputs_embeds: np.ndarray, image_start: int) -> tuple[np.ndarray, list]:
        out = self._bound_run("prefill", {"inputs_embeds": inputs_embeds, "image_start": np.array(image_start)},
                              lambda name: name != "logits")
        layers = (len(out) - 1) // 2
        return out["logits"].reshape(-1), [out[f"{kind}_{i}"] for i in range(layers) for kind in ("key", "value")]

    def decode(self, inputs_embeds: np.ndarray, position: int, cache: KVCache) -> tuple[np.ndarray, list]:
        feeds = {"inputs_embeds": inputs_embeds, "position": np.array([[position]]), "past_lengths": cache.lengths,
                 **cache.feeds()}
        out = self._bound_run("decode", feeds, lambda name: name != "logits")
        new = [out[f"new_{kind}_{i}"] for i in range(len(cache.keys)) for kind in ("key", "value")]
        return out["logits"].reshape(-1), new

    def zeros(self, shape: tuple[int, ...]) -> BoundValue:
        import onnxruntime as ort

        value = ort.OrtValue.ortvalue_from_shape_and_type(list(shape), self.kv_dtype, *self.memory)
        buffer = BoundValue(value, self.cuda, self.kv_dtype)
        self.cuda.zero(buffer.ptr, buffer.nbytes)
        return buffer

    write_slots = staticmethod(write_slots)


def open_ort(directory: Path, manifest: dict, device: str, threads: int | None,
             one_llm_session: bool = True) -> OrtBackend:
    """The onnxruntime backend for `device`: on a GPU provider with cuda-python importable, with the
    KV cache in GPU memory; otherwise with numpy caches (on a GPU then copied in and out per step)."""
    import onnxruntime as ort

    if ort_providers(device, ort.get_available_providers())[0] == "CPUExecutionProvider":
        return OrtBackend(directory, manifest, device, threads, one_llm_session)
    try:
        cuda = Cuda(import_cudart())
    except (UsageError, RuntimeError):  # no cuda-python, or no usable GPU behind onnxruntime-gpu's list
        return OrtBackend(directory, manifest, device, threads, one_llm_session)
    return OrtDeviceBackend(directory, manifest, device, threads, cuda, one_llm_session=one_llm_session)
