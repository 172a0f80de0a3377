#!/usr/bin/env bash
# The runtime benchmark on this machine's CPU: every budget x quant of the embedded model through
# onnxruntime, plus transformers' generate; then the speed targets. Results: docs/benchmarks.md.
set -euo pipefail
out=${1:-docs/results/bench-cpu.json}
ficoco-edge bench --model embedded --method ficoco-v --budgets none,4.2,3.3,2.4,1.5 --quant fp32,int8,int4 \
  --decode-tokens 16 --repeats 2 --rounds 5 --out "$out"
python benchmarks/runtime_targets.py "$out"
