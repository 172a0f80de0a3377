"""CUDA memory for the GPU backends, through cuda-python's runtime module: device buffers, the
strided device-to-device copy that writes new keys/values into their KV-cache slots, and CUDA graph
replay of a stream's repeated work. Used by the TensorRT backend (trt_backend.py) and by
onnxruntime on a GPU (ort_device.py)."""

from __future__ import annotations

from typing import Callable, Hashable

import numpy as np

from ficoco_edge.errors import UsageError

GET_CUDA = ("a KV cache on the GPU needs CUDA memory from cuda-python: `pip install cuda-python` (matching your CUDA "
            "major version), or use --device cpu")


def import_cudart():
    """cuda-python's runtime module, or a UsageError saying what to install."""
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart
        except ImportError:
            raise UsageError(GET_CUDA) from None
    return cudart


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

    def zero(self, ptr: int, nbytes: int) -> None:
        self.call(self.rt.cudaMemset(ptr, 0, nbytes))

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
        array = np.asarray(array, order="C")  # keeps a 0-d array 0-d, as ascontiguousarray does not
        out = cls(cuda, array.shape, array.dtype)
        cuda.copy(out.ptr, array.ctypes.data, out.nbytes, "HostToDevice")
        return out

    def zero(self) -> "DeviceArray":
        self.cuda.zero(self.ptr, self.nbytes)
        return self

    def numpy(self) -> np.ndarray:
        out = np.empty(self.shape, self.dtype)
        self.cuda.copy(out.ctypes.data, self.ptr, self.nbytes, "DeviceToHost")
        return out

    def __del__(self):
        if getattr(self, "ptr", None):
            self.cuda.rt.cudaFree(self.ptr)


class GraphReplay:
    """Runs work enqueued on `cuda.stream` as a CUDA graph once the same work repeats.

    run(key, enqueue): the first time a key is seen, enqueue() runs as is (TensorRT does its
    shape-dependent setup on that call, which a graph must not contain); the second time in a row
    it is captured into a graph and launched; after that, while the key holds, the graph is
    launched without calling enqueue at all, which skips the host-side work of the enqueue (a few
    ms per decode step for a 30-layer engine). The key must change whenever anything the work
    reads or writes moves (addresses, shapes). If capturing fails (the work calls something a
    graph cannot hold), enqueue runs plainly from then on.
    """

    def __init__(self, cuda: Cuda):
        self.cuda, self.graph, self.graph_key, self.last_key, self.disabled = cuda, None, None, None, False
        self.launches = 0  # graph launches so far (a diagnostic: 0 with a few steps run means no replay)

    def run(self, key: Hashable, enqueue: Callable[[], None]) -> None:
        if self.graph is not None and key == self.graph_key:
            self._launch()
            return
        self.release()
        if self.disabled or key != self.last_key:
            self.last_key = key
            enqueue()
            return
        self.graph = self._capture(enqueue)
        if self.graph is None:
            self.disabled = True
            enqueue()
        else:
            self.graph_key = key
            self._launch()

    def _launch(self) -> None:
        self.cuda.call(self.cuda.rt.cudaGraphLaunch(self.graph, self.cuda.stream))
        self.launches += 1

    def _capture(self, enqueue: Callable[[], None]):
        """An instantiated graph of what enqueue() puts on the stream, or None if it cannot be captured."""
        rt, ok = self.cuda.rt, self.cuda.rt.cudaError_t.cudaSuccess
        if rt.cudaStreamBeginCapture(self.cuda.stream, rt.cudaStreamCaptureMode.cudaStreamCaptureModeGlobal)[0] != ok:
            return None
        try:
            enqueue()
            failed = False
        except Exception:  # noqa: BLE001 - any failure inside the capture means: run without graphs
            failed = True
        err, graph = rt.cudaStreamEndCapture(self.cuda.stream)  # ends capturing whatever happened
        if failed or err != ok:
            if err == ok and graph is not None:
                rt.cudaGraphDestroy(graph)
            return None
        try:  # WithFlags: the same (error, exec) pair in cuda-python 11.x (JetPack 5) and 12.x
            err, instance = rt.cudaGraphInstantiateWithFlags(graph, 0)
        except (AttributeError, TypeError):
            err, instance = None, None
        rt.cudaGraphDestroy(graph)
        return instance if err == ok else None

    def release(self) -> None:
        if self.graph is not None:
            self.cuda.rt.cudaGraphExecDestroy(self.graph)
        self.graph, self.graph_key = None, None

    def __del__(self):
        try:
            self.release()
        except Exception:  # noqa: BLE001 - at interpreter exit the CUDA module may be gone first
            pass


def write_slots(dst, at: int, src) -> None:
    """dst (1, kvh, C, d)[:, :, at:at + n] = src (1, kvh, n, d), on the device: kvh rows of n*d values.
    dst and src: device buffers with .cuda, .ptr, .shape and .dtype (DeviceArray, or ort_device's view)."""
    _, kvh, capacity, d = dst.shape
    item = dst.dtype.itemsize
    n = src.shape[2]
    dst.cuda.copy_2d(dst.ptr + at * d * item, capacity * d * item, src.ptr, n * d * item, n * d * item, kvh)
