#!/usr/bin/env bash
# The combined LLM graph (llm.onnx) on onnxruntime-gpu with the KV cache in GPU memory: the GPU tests,
# then benchmarks/ort_gpu_llm_session.py (one vs two LLM sessions: GPU memory, speed, same tokens).
#
#   bash benchmarks/ort_gpu_llm_session.sh WHEELS   # WHEELS: onnxruntime-gpu, gguf and easy_vqa wheels
#
# Needs the SmolLM2 GGUF at $FICOCO_EDGE_SMOLLM2_GGUF, cuda-python and the image's CUDA libraries.
set -uo pipefail
source "$(dirname "$0")/ort_gpu_env.sh" "$1"
python3 -m pytest -q -p no:cacheprovider tests/runtime/test_ort_gpu.py tests/runtime/test_ort_device.py 2>&1 | tail -3
python3 benchmarks/ort_gpu_llm_session.py --budgets none,1.5 --quant fp32 --tokens 64 --repeats 5
