#!/usr/bin/env bash
# onnxruntime-gpu's providers as the runtime picks them, with the real package on a GPU machine:
# the providers listed and chosen (onnxruntime's TensorRT provider only when its library loads),
# the GPU tests, `run --device cuda` on the embedded default export, and the one-line message when
# the CPU onnxruntime's files have replaced onnxruntime-gpu's module (pip installing `onnxruntime`
# after `onnxruntime-gpu` into the same place, simulated by copying the image's CPU package over it).
#
#   bash benchmarks/ort_gpu_providers.sh WHEELS   # WHEELS: onnxruntime-gpu, gguf, easy_vqa wheels
#
# Needs the SmolLM2 GGUF at $FICOCO_EDGE_SMOLLM2_GGUF and a CPU onnxruntime importable without WHEELS.
set -uo pipefail
wheels=$1
cpu_ort=$(dirname "$(python3 -c 'import onnxruntime; print(onnxruntime.__file__)')")
python3 -m pip install -q --no-index --no-deps --target /tmp/site "$wheels"/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD XDG_CACHE_HOME=/tmp/cache
LD_LIBRARY_PATH=$(find "$(dirname "$cpu_ort")/nvidia" -maxdepth 3 -name lib -type d 2>/dev/null | paste -sd:)
export LD_LIBRARY_PATH  # the image's CUDA / cuDNN wheels' libraries, for the CUDA provider

echo "## providers (onnxruntime-gpu from $wheels, CPU onnxruntime of the image at $cpu_ort)"
python3 - <<'PY'
import onnxruntime as ort
from ficoco_edge.runtime.backends import ort_providers, tensorrt_loadable
print("onnxruntime", ort.__version__, ort.__file__)
print("listed:", ort.get_available_providers())
print("TensorRT provider loadable:", tensorrt_loadable())
for device in ("auto", "cuda", "cpu"):
    print(f"--device {device}:", ort_providers(device, ort.get_available_providers()))
PY

echo "## tests"
python3 -m pytest -q -p no:cacheprovider tests/runtime/test_ort_gpu.py tests/runtime/test_ort_device.py 2>&1 | tail -3

echo "## run --device cuda (default export, made on first use)"
python3 -m ficoco_edge run --device cuda examples/red-triangle.png "What color is the shape?" 2>&1 | tail -4
echo "exit $?"

echo "## the CPU package's files over onnxruntime-gpu's"
rm -rf /tmp/site-shadow && cp -r /tmp/site /tmp/site-shadow && cp -r "$cpu_ort"/. /tmp/site-shadow/onnxruntime/
PYTHONPATH=/tmp/site-shadow:$PWD python3 -m ficoco_edge run --device cuda examples/red-triangle.png "What color is the shape?"
echo "exit $?"
PYTHONPATH=/tmp/site-shadow:$PWD python3 -m ficoco_edge run examples/red-triangle.png "What color is the shape?" 2>&1 | tail -2
echo "exit $? (--device auto)"
