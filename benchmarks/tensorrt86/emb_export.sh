#!/usr/bin/env bash
# The embedded model's --target trt exports (fp32), unreduced and FiCoCo-V at 1.5 TFLOPs.
export FICOCO_EDGE_SMOLLM2_GGUF=/tmp/smollm2.gguf PYTHONPATH=/tmp/site312 XDG_CACHE_HOME=/tmp/cache
python3 -m ficoco_edge export --model embedded --method none --target trt --out /tmp/x/emb-none --force 2>&1 | tail -2
python3 -m ficoco_edge export --model embedded --method ficoco-v --budget 1.5 --target trt --out /tmp/x/emb-v15 --force 2>&1 | tail -2
echo EXPORTS-DONE
