#!/usr/bin/env bash
# (benchmarks/tensorrt86/make_payload.sh made the parts; each device call copied one into /tmp/p.)
# Unpack the carried Python 3.11 + TensorRT 8.6 runtime, the SmolLM2 GGUF, and export the tiny --target trt models.
set -uo pipefail
P=/tmp/p; E=/tmp/e; X=/tmp/x
mkdir -p $E $X
cat $P/part-* > $E/payload || exit 1
(cd $E && echo "$(cut -d' ' -f1 $P/payload.sha256)  payload" | sha256sum -c -) || exit 1
if command -v zstd >/dev/null; then ZSTD=(zstd); else chmod +x $P/zstd; ZSTD=(env LD_LIBRARY_PATH=$P $P/zstd); fi
head -c 71625906 $E/payload | "${ZSTD[@]}" -d -q | tar xf - -C $E || exit 1
tail -c +71625907 $E/payload | "${ZSTD[@]}" -d -q --long=30 | tar xf - -C $E || exit 1
rm $E/payload
cp $E/tensorrt_bindings/tensorrt.so $E/stubs/*.so.* $P/__init__.py $E/tensorrt/ || exit 1
cat $P/gg-0 $P/gg-1 $P/gg-2 > /tmp/smollm2.gguf && sha256sum /tmp/smollm2.gguf | cut -c1-16
python3 -m pip install -q --no-index --no-deps --target /tmp/site312 $P/gguf-0.19.0-py3-none-any.whl || exit 1
python3 - <<'PY' || exit 1
import torch
from transformers import LlavaConfig, LlavaForConditionalGeneration
torch.manual_seed(0)
LlavaForConditionalGeneration(LlavaConfig.from_pretrained("/tmp/e/tinycfg")).eval().save_pretrained("/tmp/e/tinycfg")
PY
for m in none ficoco-v ficoco-l ficoco-vl; do
  a="--keep 64"; [ $m = none ] && a=""
  python3 -m ficoco_edge export --model /tmp/e/tinycfg --method $m $a --target trt --out $X/tiny-$m --force 2>&1 | tail -1
done
