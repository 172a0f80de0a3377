"""TensorRT backend: the engines `ficoco-edge build-engine` wrote, run through the TensorRT Python
API (8.6 and later) with CUDA memory from cuda-python. Same calls as the other backends (backends.py).

The KV cache lives on the GPU: decode binds each layer's buffer as its past input directly, and
a step's new key/value are copied device-to-device into their slot (one strided cudaMemcpy2D per
buffer), so nothing crosses PCIe per token except the embedding row in and the logits out.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ficoco_edge.errors import UsageError
from ficoco_edge.runtime.cuda import Cuda, DeviceArray, import_cudart, write_slots
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


class TrtBackend:
    """Execution contexts over vision.engine, prefill.engine and decode.engine."""

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
