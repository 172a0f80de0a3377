"""TensorRT backend: the engines `ficoco-edge build-engine` wrote, run through the TensorRT Python
API (8.6 and later) with CUDA memory from cuda-python. Same calls as the other backends (backends.py).

The KV cache lives on the GPU: decode binds each layer's buffer as its past input directly, and
a step's new key/value are copied device-to-device into their slot (one strided cudaMemcpy2D per
buffer), so nothing crosses PCIe per token except the embedding row in and the logits out.

A decode step of a small model is host-bound: on an H100 with the embedded model the GPU finished
each step before TensorRT 8.6's enqueue returned (3.4 ms), and binding 64 tensors with fresh
buffers every call added ~4 ms more. So each engine keeps its bindings (EngineRunner): host inputs
are copied into buffers kept per input, outputs go to buffers kept per output, shapes and addresses
are set only when they change, and once a decode step's bindings repeat it is replayed as a CUDA
graph (cuda.GraphReplay) instead of enqueued.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ficoco_edge.errors import UsageError
from ficoco_edge.runtime.cuda import Cuda, DeviceArray, GraphReplay, import_cudart, write_slots
from ficoco_edge.runtime.kv import KVCache

GET_TENSORRT = ("the TensorRT backend needs the `tensorrt` Python package: JetPack provides it on Jetson; on an x86 "
                "machine with an NVIDIA GPU `pip install tensorrt`; or use --backend ort")


def import_trt_and_cuda():
    """(tensorrt, cudart) or a UsageError saying what to install."""
    try:
        import tensorrt
    except (ImportError, OSError):  # OSError: the package is there but libnvinfer is not
        raise UsageError(GET_TENSORRT) from None
    return tensorrt, import_cudart()


class EngineRunner:
    """One engine's execution context and what it was last given.

    run(inputs) -> outputs: inputs are numpy arrays (copied into a device buffer kept for that
    input) or DeviceArrays (bound as they are); outputs are device buffers kept for each output,
    valid until the next run of this engine (callers copy what they keep).
    """

    def __init__(self, trt, cuda: Cuda, engine, name: str, graphs: bool):
        self.cuda, self.name, self.context = cuda, name, engine.create_execution_context()
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        dtypes = {n: np.dtype(trt.nptype(engine.get_tensor_dtype(n))) for n in names}
        is_input = {n: engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names}
        self.inputs = {n: d for n, d in dtypes.items() if is_input[n]}
        self.outputs = {n: d for n, d in dtypes.items() if not is_input[n]}
        self.shapes, self.addresses, self.staged, self.output_buffers = {}, {}, {}, {}
        self.outputs_stale = True  # an input shape was set since the output buffers were (re)bound
        self.replay = GraphReplay(cuda) if graphs else None

    def _on_device(self, name: str, value) -> DeviceArray:
        """value as a device buffer: a DeviceArray as is, a host array copied into this input's buffer."""
        if isinstance(value, DeviceArray):
            return value
        value = np.asarray(value, self.inputs[name], order="C")  # ascontiguousarray would make a scalar 1-d
        buffer = self.staged.get(name)
        if buffer is None or buffer.shape != value.shape:
            buffer = self.staged[name] = DeviceArray(self.cuda, value.shape, value.dtype)
        self.cuda.copy(buffer.ptr, value.ctypes.data, buffer.nbytes, "HostToDevice")
        return buffer

    def _bind(self, name: str, buffer: DeviceArray) -> None:
        if self.addresses.get(name) != buffer.ptr:
            self.context.set_tensor_address(name, buffer.ptr)
            self.addresses[name] = buffer.ptr

    def _bind_inputs(self, inputs: dict) -> None:
        """Bind every input given (inputs the engine does not take were dropped at export)."""
        for name in (n for n in self.inputs if n in inputs):
            buffer = self._on_device(name, inputs[name])
            if self.shapes.get(name) != buffer.shape:
                self.outputs_stale = True  # before the call: a refused shape leaves TensorRT's state changed too
                if not self.context.set_input_shape(name, buffer.shape):
                    raise UsageError(f"{self.name}: {name} of shape {list(buffer.shape)} is outside the engine's "
                                     "profile; rebuild with `ficoco-edge build-engine` and larger --max-text / "
                                     "--max-new-tokens")
                self.shapes[name] = buffer.shape
            self._bind(name, buffer)

    def _bind_outputs(self) -> None:
        """Output buffers of the shapes TensorRT infers from the input shapes (none data-dependent here)."""
        for name, dtype in self.outputs.items():
            shape = tuple(self.context.get_tensor_shape(name))
            if name not in self.output_buffers or self.output_buffers[name].shape != shape:
                self.output_buffers[name] = DeviceArray(self.cuda, shape, dtype)
            self._bind(name, self.output_buffers[name])
        self.outputs_stale = False

    def _enqueue(self) -> None:
        if not self.context.execute_async_v3(self.cuda.stream):
            raise RuntimeError(f"TensorRT could not run the {self.name} engine")

    def run(self, inputs: dict) -> dict[str, DeviceArray]:
        self._bind_inputs(inputs)
        if self.outputs_stale:
            self._bind_outputs()
        if self.replay is None:
            self._enqueue()
        else:  # any moved buffer or new shape is a new key, so a stale graph is never launched
            self.replay.run((tuple(self.addresses.items()), tuple(self.shapes.items())), self._enqueue)
        self.cuda.sync()
        return dict(self.output_buffers)


class TrtBackend:
    """Execution contexts over vision.engine, prefill.engine and decode.engine. The caches prefill
    and decode return are the engines' output buffers: valid until the same call runs again."""

    name = "tensorrt"

    def __init__(self, directory: Path, manifest: dict):
        if manifest.get("target") != "trt":
            raise UsageError(f"{directory} is an onnxruntime export; for TensorRT re-export it with "
                             "`ficoco-edge export ... --target trt`, then run `ficoco-edge build-engine` on it")
        if "engines" not in manifest:
            raise UsageError(f"{directory} has no TensorRT engines: run `ficoco-edge build-engine {directory}` on the "
                             "machine that will run them")
        trt, cudart = import_trt_and_cuda()
        self.trt, self.cuda = trt, Cuda(cudart)
        self.runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engines, self.runners = {}, {}
        for name, spec in manifest["engines"].items():
            engine = self.runtime.deserialize_cuda_engine((Path(directory) / spec["file"]).read_bytes())
            if engine is None:
                raise UsageError(f"TensorRT could not load {spec['file']} (built by TensorRT {spec.get('tensorrt_version')}"
                                 f", this is {trt.__version__}): rebuild it with `ficoco-edge build-engine`")
            # only decode repeats with the same bindings; vision and prefill run once per answer
            self.engines[name] = engine
            self.runners[name] = EngineRunner(trt, self.cuda, engine, name, graphs=name == "decode")
        self.kv_dtype = self.runners["decode"].inputs["past_key_0"]
        self.kv_itemsize = self.kv_dtype.itemsize

    def _execute(self, engine: str, inputs: dict) -> dict[str, DeviceArray]:
        """inputs: name -> numpy array or DeviceArray -> outputs as DeviceArrays (valid until engine runs again)."""
        return self.runners[engine].run(inputs)

    def vision(self, pixel_values: np.ndarray) -> np.ndarray:
        return self._execute("vision", {"pixel_values": pixel_values})["image_embeds"].numpy().astype(np.float32)

    def prefill(self, inputs_embeds: np.ndarray, image_start: int) -> tuple[np.ndarray, list]:
        out = self._execute("prefill", {"inputs_embeds": inputs_embeds, "image_start": np.array(image_start)})
        layers = (len(out) - 1) // 2
        caches = [out[f"{kind}_{i}"] for i in range(layers) for kind in ("key", "value")]
        return out["logits"].numpy().astype(np.float32).reshape(-1), caches

    def decode(self, inputs_embeds: np.ndarray, position: int, cache: KVCache) -> tuple[np.ndarray, list]:
        feeds = {"inputs_embeds": inputs_embeds, "position": np.array([[position]]), "past_lengths": cache.lengths,
                 **cache.feeds()}
        out = self._execute("decode", feeds)
        new = [out[f"new_{kind}_{i}"] for i in range(len(cache.keys)) for kind in ("key", "value")]
        return out["logits"].numpy().astype(np.float32).reshape(-1), new

    def zeros(self, shape: tuple[int, ...]) -> DeviceArray:
        return DeviceArray(self.cuda, shape, self.kv_dtype).zero()

    write_slots = staticmethod(write_slots)
