#!/usr/bin/env bash
# After device_setup.sh: random weights (seed 0) for the carried tiny llava-hf config, exported
# --target trt for every method with the image's own Python + torch, into /tmp/x/tiny-METHOD.
set -uo pipefail
python3 - <<'PY' || exit 1
import torch
from transformers import LlavaConfig, LlavaForConditionalGeneration
torch.manual_seed(0)
LlavaForConditionalGeneration(LlavaConfig.from_pretrained("/tmp/e/tinycfg")).eval().save_pretrained("/tmp/e/tinycfg")
PY
for m in none ficoco-v ficoco-l ficoco-vl; do
  a="--keep 64"; [ $m = none ] && a=""
  python3 -m ficoco_edge export --model /tmp/e/tinycfg --method $m $a --target trt --out /tmp/x/tiny-$m --force 2>&1 | tail -1
done
