#!/usr/bin/env bash
# (benchmarks/tensorrt86/make_payload.sh made the parts; each device call copied one into /tmp/p.)
# Unpack the carried Python 3.11 + TensorRT 8.6 runtime into /tmp/e (run it through ./py311).
set -uo pipefail
P=/tmp/p; E=/tmp/e
mkdir -p $E
cat $P/part-* > $E/payload || exit 1
(cd $E && echo "$(cut -d' ' -f1 $P/payload.sha256)  payload" | sha256sum -c -) || exit 1
if command -v zstd >/dev/null; then ZSTD=(zstd); else chmod +x $P/zstd; ZSTD=(env LD_LIBRARY_PATH=$P $P/zstd); fi
ENV_BYTES=$(cat $P/env.size) || exit 1
head -c $ENV_BYTES $E/payload | "${ZSTD[@]}" -d -q | tar xf - -C $E || exit 1
tail -c +$((ENV_BYTES + 1)) $E/payload | "${ZSTD[@]}" -d -q --long=30 | tar xf - -C $E || exit 1
rm $E/payload
cp $E/tensorrt_bindings/tensorrt.so $E/stubs/*.so.* $P/__init__.py $E/tensorrt/ || exit 1
