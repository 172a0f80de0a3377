"""Stand-ins for the TensorRT 10 runtime API and cuda-python's runtime module, for testing the
TensorRT backend's own logic (bindings, device buffers, in-place KV writes) without a GPU.

"Device" memory is host memory handed out by FakeCudart.cudaMalloc; FakeContext refuses any
tensor address that did not come from it, so a host pointer bound by mistake fails the test. An
"engine" file holds the ONNX graph, which FakeContext runs with onnxruntime on the bound memory,
reading its inputs when the run happens. While a stream is captured, a run is recorded instead,
with the addresses and shapes bound at that moment (as a CUDA graph records kernels with their
pointers), and happens at each cudaGraphLaunch on what those addresses hold then; a capture right
after a binding changed, without a plain run in between, fails the test (TensorRT sets itself up
for new bindings on a plain enqueue).
"""

import ctypes
import types

import numpy as np
import onnxruntime as ort

ORT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(int64)": np.int64}


class FakeCudart:
    cudaError_t = types.SimpleNamespace(cudaSuccess=0, cudaErrorStreamCaptureUnsupported=900)
    cudaMemcpyKind = types.SimpleNamespace(cudaMemcpyHostToDevice=1, cudaMemcpyDeviceToHost=2, cudaMemcpyDeviceToDevice=3)
    cudaStreamCaptureMode = types.SimpleNamespace(cudaStreamCaptureModeGlobal=0)

    def __init__(self, capturable: bool = True):
        self.blocks = {}  # pointer -> the numpy array that owns the memory
        self.copies = []  # kinds of every cudaMemcpy / cudaMemcpy2D
        self.capturable = capturable  # False: every capture fails, as when the work calls what a graph cannot hold
        self.captured = None  # runs recorded while the stream is captured
        self.graphs, self.launches, self.mallocs = {}, 0, 0

    def cudaStreamCreate(self):
        return 0, 7

    def cudaStreamSynchronize(self, stream):
        return (0,)

    def cudaMalloc(self, nbytes):
        assert self.captured is None, "cudaMalloc while capturing a graph"
        self.mallocs += 1
        block = np.empty(nbytes, np.uint8)
        self.blocks[block.ctypes.data] = block
        return 0, block.ctypes.data

    def cudaFree(self, ptr):
        self.blocks.pop(ptr)
        return (0,)

    def cudaMemset(self, ptr, value, nbytes):
        ctypes.memset(ptr, value, nbytes)
        return (0,)

    def cudaMemcpy(self, dst, src, nbytes, kind):
        self.copies.append(kind)
        ctypes.memmove(dst, src, nbytes)
        return (0,)

    def cudaMemcpy2D(self, dst, dpitch, src, spitch, width, height, kind):
        self.copies.append(("2d", kind))
        for row in range(height):
            ctypes.memmove(dst + row * dpitch, src + row * spitch, width)
        return (0,)

    def cudaStreamBeginCapture(self, stream, mode):
        self.captured = []
        return (0,)

    def cudaStreamEndCapture(self, stream):
        runs, self.captured = self.captured, None
        if not self.capturable:
            return self.cudaError_t.cudaErrorStreamCaptureUnsupported, None
        self.graphs[id(runs)] = runs
        return 0, id(runs)

    def cudaGraphInstantiateWithFlags(self, graph, flags):
        return 0, ("exec", graph)

    def cudaGraphDestroy(self, graph):
        return (0,)

    def cudaGraphExecDestroy(self, instance):
        self.graphs.pop(instance[1])
        return (0,)

    def cudaGraphLaunch(self, instance, stream):
        self.launches += 1
        for run in self.graphs[instance[1]]:
            run()
        return (0,)

    def room(self, ptr: int) -> int:
        """Bytes from ptr to the end of its allocation (0 if it is not device memory)."""
        return next((base + block.nbytes - ptr for base, block in self.blocks.items()
                     if base <= ptr < base + block.nbytes), 0)

    def is_device(self, ptr: int) -> bool:
        return self.room(ptr) > 0


class FakeContext:
    def __init__(self, engine):
        self.engine, self.shapes, self.addresses, self.output_shapes = engine, {}, {}, {}
        self.rebound = False  # a shape or address set since the last plain run

    def set_input_shape(self, name, shape):
        if len(shape) != self.engine.ranks[name]:  # TensorRT refuses another rank (onnxruntime takes [1] for [])
            return False
        self.shapes[name], self.rebound = tuple(shape), True
        return True

    def set_tensor_address(self, name, ptr):
        assert self.engine.cudart.is_device(ptr), f"{name} bound to memory that is not on the device"
        self.addresses[name], self.rebound = ptr, True

    def _read(self, name, addresses, shapes):
        dtype = np.dtype(self.engine.dtypes[name])
        count = int(np.prod(shapes[name]))
        raw = (ctypes.c_uint8 * (count * dtype.itemsize)).from_address(addresses[name])
        return np.frombuffer(raw, dtype).reshape(shapes[name]).copy()

    def _results(self, addresses=None, shapes=None) -> dict:
        addresses, shapes = addresses or self.addresses, shapes or self.shapes
        feeds = {i: self._read(i, addresses, shapes) for i in self.engine.inputs}
        return dict(zip(self.engine.outputs, self.engine.session.run(self.engine.outputs, feeds)))

    def get_tensor_shape(self, name):  # TensorRT infers output shapes from input shapes; onnxruntime runs
        key = tuple(sorted(self.shapes.items()))
        if key not in self.output_shapes:
            self.output_shapes[key] = {output: data.shape for output, data in self._results().items()}
        return self.output_shapes[key][name]

    def _run(self, addresses, shapes):
        for name, data in self._results(addresses, shapes).items():
            data = np.ascontiguousarray(data)
            assert self.engine.cudart.room(addresses[name]) >= data.nbytes, f"{name}: output buffer too small"
            ctypes.memmove(addresses[name], data.ctypes.data, data.nbytes)

    def execute_async_v3(self, stream):
        bound = dict(self.addresses), dict(self.shapes)
        if self.engine.cudart.captured is not None:
            assert not self.rebound, "captured right after a binding changed, without a plain run in between"
            self.engine.cudart.captured.append(lambda: self._run(*bound))
        else:
            self._run(*bound)
            self.rebound = False
        return True


class FakeEngine:
    def __init__(self, onnx_bytes, cudart):
        self.session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
        self.cudart = cudart
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.ranks = {i.name: len(i.shape) for i in self.session.get_inputs()}
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.dtypes = {a.name: ORT_TYPES[a.type] for a in [*self.session.get_inputs(), *self.session.get_outputs()]}
        self.num_io_tensors = len(self.inputs) + len(self.outputs)

    def get_tensor_name(self, index):
        return (self.inputs + self.outputs)[index]

    def get_tensor_mode(self, name):
        return FakeTensorRT.TensorIOMode.INPUT if name in self.inputs else FakeTensorRT.TensorIOMode.OUTPUT

    def get_tensor_dtype(self, name):
        return self.dtypes[name]

    def create_execution_context(self):
        return FakeContext(self)


class FakeTensorRT:
    __version__ = "10.0.0-fake"
    TensorIOMode = types.SimpleNamespace(INPUT="input", OUTPUT="output")

    def __init__(self, cudart: FakeCudart):
        self.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda self, level: None})
        fake_cudart = cudart

        class Runtime:
            def __init__(self, logger):
                pass

            def deserialize_cuda_engine(self, blob):
                return FakeEngine(blob, fake_cudart)

        self.Runtime = Runtime

    @staticmethod
    def nptype(dtype):
        return dtype


def install(monkeypatch, capturable: bool = True) -> FakeCudart:
    """Make `import tensorrt` and `from cuda.bindings import runtime` give the stand-ins."""
    cudart = FakeCudart(capturable)
    bindings = types.ModuleType("cuda.bindings")
    bindings.runtime = cudart
    cuda = types.ModuleType("cuda")
    cuda.bindings = bindings
    for name, module in {"tensorrt": FakeTensorRT(cudart), "cuda": cuda, "cuda.bindings": bindings,
                         "cuda.bindings.runtime": cudart}.items():
        monkeypatch.setitem(__import__("sys").modules, name, module)
    return cudart
