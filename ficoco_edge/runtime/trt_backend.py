"""TensorRT backend: the engines `ficoco-edge build-engine` wrote, run through the TensorRT 10 Python
API with CUDA memory from cuda-python. Same calls as the other backends (backends.py).

The KV cache lives on the GPU: decode binds each layer's buffer as its past input directly, and
a step's new key/value are copied device-to-device into their slot (one strided cudaMemcpy2D per
buffer), so nothing crosses PCIe per token except the embedding row in and the logits out.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ficoco_edge.errors import UsageError
from ficoco_edge.runtime.kv import KVCache

GET_TENSORRT = ("the TensorRT backend needs the `tensorrt` Python package: JetPack provides it on Jetson; on an x86 "
                "machine with an NVIDIA GPU `pip install tensorrt`; or use --backend ort")
GET_CUDA = ("the TensorRT backend needs CUDA memory from cuda-python: `pip install cuda-python` (matching your CUDA "
            "major version), or use --backend ort")


def import_trt_and_cuda():
    """(tensorrt, cudart) or a UsageError saying what to install."""
    try:
        import tensorrt
    except (ImportError, OSError):  # OSError: the package is there but libnvinfer is not
        raise UsageError(GET_TENSORRT) from None
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart
        except ImportError:
            raise UsageError(GET_CUDA) from None
    return tensorrt, cudart


class Cuda:
    """The few CUDA runtime calls the backend needs, with errors checked."""

    def __init__(self, cudart):
        self.rt = cudart
        self.stream = self.call(cudart.cudaStreamCreate())

    def call(self, result):
        err, *values = result if isinstance(result, tuple) else (result,)
        if err != self.rt.cudaError_t.cudaSuccess:
            raise RuntimeError(f"CUDA error {err}")
        return values[0] if len(values) == 1 else None

    def copy(self, dst: int, src: int, nbytes: int, kind: str) -> None:
        self.call(self.rt.cudaMemcpy(dst, src, nbytes, getattr(self.rt.cudaMemcpyKind, f"cudaMemcpy{kind}")))

    def copy_2d(self, dst: int, dpitch: int, src: int, spitch: int, width: int, height: int) -> None:
        self.call(self.rt.cudaMemcpy2D(dst, dpitch, src, spitch, width, height,
                                       self.rt.cudaMemcpyKind.cudaMemcpyDeviceToDevice))

    def sync(self) -> None:
        self.call(self.rt.cudaStreamSynchronize(self.stream))


class DeviceArray:
    """A C-contiguous CUDA buffer of `shape` and numpy `dtype`; freed with the object."""

    def __init__(self, cuda: Cuda, shape: tuple[int, ...], dtype):
        self.cuda, self.shape, self.dtype = cuda, tuple(int(d) for d in shape), np.dtype(dtype)
        self.nbytes = int(np.prod(self.shape)) * self.dtype.itemsize
        self.ptr = cuda.call(cuda.rt.cudaMalloc(max(self.nbytes, 1)))

    @classmethod
    def from_numpy(cls, cuda: Cuda, array: np.ndarray) -> "DeviceArray":
        array = np.ascontiguousarray(array)
        out = cls(cuda, array.shape, array.dtype)
        cuda.copy(out.ptr, array.ctypes.data, out.nbytes, "HostToDevice")
        return out

    def zero(self) -> "DeviceArray":
        self.cuda.call(self.cuda.rt.cudaMemset(self.ptr, 0, self.nbytes))
        return self

    def numpy(self) -> np.ndarray:
        out = np.empty(self.shape, self.dtype)
        self.cuda.copy(out.ctypes.data, self.ptr, self.nbytes, "DeviceToHost")
        return out

    def __del__(self):
        if getattr(self, "ptr", None):
            self.cuda.rt.cudaFree(self.ptr)


def write_slots(dst: DeviceArray, at: int, src: DeviceArray) -> None:
    """dst (1, kvh, C, d)[:, :, at:at + n] = src (1, kvh, n, d), on the device: kvh rows of n*d values."""
    _, kvh, capacity, d = dst.shape
    item = dst.dtype.itemsize
    n = src.shape[2]
    dst.cuda.copy_2d(dst.ptr + at * d * item, capacity * d * item, src.ptr, n * d * item, n * d * item, kvh)


class TrtBackend:
    """Execution contexts over vision.engine, prefill.engine and decode.engine."""

    name = "tensorrt"

    def __init__(self, directory: Path, manifest: dict):
        if "engines" not in manifest:
            raise UsageError(f"{directory} has no TensorRT engines: run `ficoco-edge build-engine {directory}` on the "
                             "machine that will run them")
        trt, cudart = import_trt_and_cuda()
        self.trt, self.cuda = trt, Cuda(cudart)
        self.runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engines, self.contexts = {}, {}
        for name, spec in manifest["engines"].items():
            engine = self.runtime.deserialize_cuda_engine((Path(directory) / spec["file"]).read_bytes())
            if engine is None:
                raise UsageError(f"TensorRT could not load {spec['file']} (built by TensorRT {spec.get('tensorrt_version')}"
                                 f", this is {trt.__version__}): rebuild it with `ficoco-edge build-engine`")
            self.engines[name], self.contexts[name] = engine, engine.create_execution_context()
        self.kv_dtype = np.dtype(trt.nptype(self.engines["decode"].get_tensor_dtype("past_key_0")))
        self.kv_itemsize = self.kv_dtype.itemsize

    def _dtype(self, graph: str, tensor: str) -> np.dtype:
        return np.dtype(self.trt.nptype(self.engines[graph].get_tensor_dtype(tensor)))

    def _execute(self, graph: str, inputs: dict) -> dict[str, DeviceArray]:
        """inputs: name -> numpy array or DeviceArray (bound as is) -> outputs as DeviceArrays."""
        engine, context = self.engines[graph], self.contexts[graph]
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        held = {}
        for name in names:
            if engine.get_tensor_mode(name) != self.trt.TensorIOMode.INPUT or name not in inputs:
                continue
            value = inputs[name]
            if not isinstance(value, DeviceArray):
                value = DeviceArray.from_numpy(self.cuda, np.asarray(value, self._dtype(graph, name)))
            if not context.set_input_shape(name, value.shape):
                raise UsageError(f"{graph}: {name} of shape {list(value.shape)} is outside the engine's profile; "
                                 "rebuild with `ficoco-edge build-engine` and larger --max-text / --max-new-tokens")
            context.set_tensor_address(name, value.ptr)
            held[name] = value
        outputs = {}
        for name in names:
            if engine.get_tensor_mode(name) == self.trt.TensorIOMode.OUTPUT:
                outputs[name] = DeviceArray(self.cuda, tuple(context.get_tensor_shape(name)), self._dtype(graph, name))
                context.set_tensor_address(name, outputs[name].ptr)
        if not context.execute_async_v3(self.cuda.stream):
            raise RuntimeError(f"TensorRT could not run the {graph} engine")
        self.cuda.sync()
        return outputs

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
