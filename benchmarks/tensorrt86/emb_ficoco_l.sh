#!/usr/bin/env bash
# After device_setup.sh, with the SmolLM2 GGUF parts and the gguf wheel in /tmp/p (as for emb_export.sh):
# the embedded model's FiCoCo-${METHOD:-l} ${BUDGET:-1.5} --target trt export (the image's Python + torch),
# its engines at --opt-level ${LEVEL:-1} (timed; build-engine's progress in $X.build.log), then tensorrt_check.py --prebuilt against onnxruntime.
# Meant to run detached (setsid); writes /tmp/x/emb-ficoco.out, ending in a line ALL-DONE.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd); X=/tmp/x/emb-${METHOD:-l}${BUDGET:-1.5}
{
  [ -f /tmp/smollm2.gguf ] || cat /tmp/p/gg-0 /tmp/p/gg-1 /tmp/p/gg-2 > /tmp/smollm2.gguf
  sha256sum /tmp/smollm2.gguf | cut -c1-16
  python3 -m pip install -q --no-index --no-deps --target /tmp/site312 /tmp/p/gguf-0.19.0-py3-none-any.whl
  SECONDS=0
  FICOCO_EDGE_SMOLLM2_GGUF=/tmp/smollm2.gguf PYTHONPATH=/tmp/site312 XDG_CACHE_HOME=/tmp/cache python3 -m ficoco_edge \
    export --model embedded --method ficoco-${METHOD:-l} --budget ${BUDGET:-1.5} --target trt --out $X --force 2>&1 | tail -2
  echo "EXPORTED in $SECONDS s"; SECONDS=0
  "$HERE/py311" -m ficoco_edge build-engine $X --opt-level "${LEVEL:-1}" > $X.build.log 2>&1  # progress: poll this log
  grep -v "^\[" $X.build.log | tail -5
  echo "BUILT in $SECONDS s"
  "$HERE/py311" benchmarks/tensorrt_check.py $X --prebuilt --tokens 16 --repeats 10 2>&1 | grep -v "^\[" | tail -4
  echo ALL-DONE
} > /tmp/x/emb-ficoco.out 2>&1
