#!/usr/bin/env bash
# After device_setup.sh and tiny_exports.sh: the FiCoCo-L / FiCoCo-VL prefill on TensorRT 8.6.
# bisect_build.py on each prefill (whole graph with and without the dynamic-shape compiler; bisects
# if it fails), then tensorrt_check.py on all four tiny exports. Meant to run detached (setsid);
# writes /tmp/x/ficoco-l-check.txt, then a line DONE.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd); LOG=/tmp/x/ficoco-l-check.txt
{
  for m in ficoco-l ficoco-vl; do
    PYTHONPATH=$PWD timeout 280 python3 "$HERE/bisect_build.py" /tmp/x/tiny-$m --trt-python "$HERE/py311"
  done
  timeout 560 "$HERE/py311" benchmarks/tensorrt_check.py /tmp/x/tiny-ficoco-l /tmp/x/tiny-ficoco-vl /tmp/x/tiny-ficoco-v \
    /tmp/x/tiny-none --tokens 16 --repeats 5 2>&1 | grep -v "^\[TRT\]\|^\[W\]"
  echo DONE
} > "$LOG" 2>&1
