#!/usr/bin/env bash
# The combined LLM graph (llm.onnx) on onnxruntime-gpu with the KV cache in GPU memory: the GPU tests,
# then benchmarks/ort_gpu_llm_session.py (one vs two LLM sessions: GPU memory, speed, same tokens).
#
#   bash benchmarks/ort_gpu_llm_session.sh WHEELS   # WHEELS: onnxruntime-gpu, gguf and easy_vqa wheels
#
# Needs the SmolLM2 GGUF at $FICOCO_EDGE_SMOLLM2_GGUF, cuda-python and the image's CUDA libraries.
set -uo pipefail
cpu_ort=$(dirname "$(python3 -c 'import onnxruntime; print(onnxruntime.__file__)')")
python3 -m pip install -q --no-index --no-deps --target /tmp/site "$1"/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD XDG_CACHE_HOME=/tmp/cache
LD_LIBRARY_PATH=$(find "$(dirname "$cpu_ort")/nvidia" -maxdepth 3 -name lib -type d 2>/dev/null | paste -sd:)
export LD_LIBRARY_PATH  # the image's CUDA / cuDNN wheels' libraries, for the CUDA provider
python3 -c "import onnxruntime as o; print('onnxruntime', o.__version__, o.get_available_providers())"
python3 -m pytest -q -p no:cacheprovider tests/runtime/test_ort_gpu.py tests/runtime/test_ort_device.py 2>&1 | tail -3
python3 benchmarks/ort_gpu_llm_session.py --budgets none,1.5 --quant fp32 --tokens 64 --repeats 5
