#!/usr/bin/env bash
# The embedded model's --target trt exports (fp32), unreduced and FiCoCo-V at 1.5 TFLOPs, with the
# image's own Python + torch; the SmolLM2 GGUF carried in three parts (/tmp/p/gg-*), the gguf wheel beside them.
set -uo pipefail
cat /tmp/p/gg-0 /tmp/p/gg-1 /tmp/p/gg-2 > /tmp/smollm2.gguf && sha256sum /tmp/smollm2.gguf | cut -c1-16
python3 -m pip install -q --no-index --no-deps --target /tmp/site312 /tmp/p/gguf-0.19.0-py3-none-any.whl || exit 1
export FICOCO_EDGE_SMOLLM2_GGUF=/tmp/smollm2.gguf PYTHONPATH=/tmp/site312 XDG_CACHE_HOME=/tmp/cache
python3 -m ficoco_edge export --model embedded --method ficoco-v --budget 1.5 --target trt --out /tmp/x/emb-v15 --force 2>&1 | tail -2
python3 -m ficoco_edge export --model embedded --method none --target trt --out /tmp/x/emb-none --force 2>&1 | tail -2
echo EXPORTS-DONE
