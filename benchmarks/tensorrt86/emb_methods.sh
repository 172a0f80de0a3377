#!/usr/bin/env bash
# After device_setup.sh, with the SmolLM2 GGUF parts and the gguf wheel in /tmp/p (as for emb_export.sh):
# the embedded model exported --target trt at ${BUDGET:-1.5} TFLOPs for each of ${METHODS} (default: none
# ficoco-v ficoco-l ficoco-vl; the image's Python + torch, one after another), their engines built side by side at
# --opt-level ${LEVEL:-1} (TensorRT 8.6 spends most of a build on one CPU core; each timed, progress in
# /tmp/x/NAME.build.log), then one tensorrt_check.py --prebuilt over all of them against onnxruntime, so that
# the methods' timings come from one process. With READY=FILE the exports start at once and the builds wait
# for FILE (start this before device_setup.sh, touch FILE after). Meant to run detached (setsid); writes
# /tmp/x/emb-methods.out, ending in a line ALL-DONE.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd); METHODS=${METHODS:-none ficoco-v ficoco-l ficoco-vl}; BUDGET=${BUDGET:-1.5}
name() { [ "$1" = none ] && echo emb-none || echo "emb-${1#ficoco-}$BUDGET"; }
export_all() {
  [ -f /tmp/smollm2.gguf ] || cat /tmp/p/gg-0 /tmp/p/gg-1 /tmp/p/gg-2 > /tmp/smollm2.gguf
  sha256sum /tmp/smollm2.gguf | cut -c1-16
  python3 -m pip install -q --no-index --no-deps --target /tmp/site312 /tmp/p/gguf-0.19.0-py3-none-any.whl
  for m in $METHODS; do
    SECONDS=0; local budget="--budget $BUDGET"; [ $m = none ] && budget=""
    if FICOCO_EDGE_SMOLLM2_GGUF=/tmp/smollm2.gguf PYTHONPATH=/tmp/site312 XDG_CACHE_HOME=/tmp/cache python3 -m ficoco_edge \
      export --model embedded --method $m $budget --target trt --out /tmp/x/$(name $m) --force 2>&1 | tail -1
    then echo "EXPORTED $(name $m) in $SECONDS s"; else echo "EXPORT FAILED: $(name $m)"; fi
  done
  touch /tmp/x/exports.done
}
build() {  # $1: export name; waits for its export (renamed into place when done) and for READY
  until [ -f /tmp/x/$1/manifest.json -o -f /tmp/x/exports.done ] && [ -z "${READY:-}" -o -f "${READY:-/}" ]; do
    sleep 2; done
  [ -f /tmp/x/$1/manifest.json ] || { echo "NOT EXPORTED $1"; return 1; }
  SECONDS=0
  "$HERE/py311" -m ficoco_edge build-engine /tmp/x/$1 --opt-level "${LEVEL:-1}" > /tmp/x/$1.build.log 2>&1 \
    && touch /tmp/x/$1.built
  echo "BUILT $1 in $SECONDS s (exit $?)"; grep -v "^\[" /tmp/x/$1.build.log | tail -4
}
{
  export_all &
  built=()
  for m in $METHODS; do build "$(name $m)" & done
  wait
  for m in $METHODS; do [ -f /tmp/x/$(name $m).built ] && built+=(/tmp/x/$(name $m)); done
  "$HERE/py311" benchmarks/tensorrt_check.py "${built[@]}" --prebuilt --tokens 16 --repeats ${REPEATS:-5} 2>&1 | grep -v "^\["
  echo ALL-DONE
} > /tmp/x/emb-methods.out 2>&1
