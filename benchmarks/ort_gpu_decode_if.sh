#!/usr/bin/env bash
# onnxruntime-gpu: decode through the combined LLM graph's If against two LLM sessions, both in one
# process (benchmarks/llm_session_decode.py --device cuda), for the embedded model unreduced (fp32) and
# at FiCoCo-V 1.5 (fp32, int4), each with either backend allocating first.
#
#   bash benchmarks/ort_gpu_decode_if.sh WHEELS   # WHEELS: onnxruntime-gpu and gguf wheels
#
# Needs the SmolLM2 GGUF at $FICOCO_EDGE_SMOLLM2_GGUF, cuda-python and the image's CUDA libraries.
set -uo pipefail
source "$(dirname "$0")/ort_gpu_env.sh" "$1"
export_one() { python3 -m ficoco_edge export --model embedded "$@" 2>&1 | tail -1; }
export_one --method none --out /tmp/x/none-fp32 --force &
export_one --method ficoco-v --budget 1.5 --out /tmp/x/v15-fp32 --force &
export_one --method ficoco-v --budget 1.5 --quant int4 --out /tmp/x/v15-int4 --force &
wait
for x in none-fp32 v15-fp32 v15-int4; do
  for first in one two; do
    echo "== $x, $first first"
    python3 benchmarks/llm_session_decode.py /tmp/x/$x --device cuda --tokens 32 --rounds 20 --first $first
  done
done
