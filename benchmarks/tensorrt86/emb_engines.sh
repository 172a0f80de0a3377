#!/usr/bin/env bash
# After device_setup.sh, while or after emb_export.sh runs: build the embedded exports' engines (fp32,
# --opt-level ${LEVEL:-1}) side by side (TensorRT 8.6 spends most of such a build on one CPU core), timed;
# as each is built, check it against onnxruntime (tensorrt_check.py --prebuilt) and time its decode
# (trt_decode.py) here and, if /tmp/repo-old holds an earlier checkout, there; one measurement at a time.
# Meant to run detached (setsid) from a copy of the checkout; writes /tmp/x/EXPORT.out, polled by later calls.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
PY=$HERE/py311
measure() {
  "$PY" benchmarks/tensorrt_check.py /tmp/x/$1 --prebuilt --tokens 16 --repeats 10
  "$PY" benchmarks/trt_decode.py /tmp/x/$1
  if [ -d /tmp/repo-old ]; then (cd /tmp/repo-old && "$PY" benchmarks/trt_decode.py /tmp/x/$1 --label earlier); fi
}
one() {
  until [ -f /tmp/x/$1/manifest.json ]; do sleep 3; done  # the export renames its folder into place when done
  SECONDS=0
  "$PY" -m ficoco_edge build-engine /tmp/x/$1 --opt-level "${LEVEL:-1}" > /tmp/x/build-$1.log 2>&1
  local status=$?
  echo "BUILT $1 in $SECONDS s (exit $status)"
  [ $status = 0 ] || { tail -5 /tmp/x/build-$1.log; return 1; }
  exec 9>/tmp/x/measure.lock && flock 9 && measure "$1"
}
for x in emb-v15 emb-none; do one $x > /tmp/x/$x.out 2>&1 & done
wait
echo ALL-DONE
