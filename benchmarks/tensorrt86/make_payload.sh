#!/usr/bin/env bash
# Build the carried TensorRT 8.6 runtime for benchmarks/tensorrt_check.py on a GPU machine whose
# image has no TensorRT and no network: PyPI's last TensorRT wheel with its builder (8.6.0, libraries
# for CUDA 12) with the 8.6.1 Python 3.11 bindings, a Python 3.11 from this machine, the runtime's
# wheels for 3.11, and stub cuBLAS / cuDNN libraries (libnvinfer_plugin links them; the engines here
# use no cuBLAS/cuDNN tactic, and a stub call fails with an error status). Writes $OUT/payload,
# $OUT/payload.sha256 and $OUT/parts/part-NN (40 MB, to carry one per device call); device_setup.sh
# unpacks them on the other side. Needs pip access to PyPI, gcc, zstd, and tinycfg: the config and
# tokenizer files of a tiny llava-hf checkpoint (device_setup.sh makes its random weights).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd); OUT=${1:-/tmp/trt}; PY=${PY:-/root/.pyenv/versions/3.11.7}; TINY=${TINY:-/tmp/tinyllava}
mkdir -p $OUT/x $OUT/stubs $OUT/py311/bin $OUT/py311/lib $OUT/tinycfg && cd $OUT
pip download -q --no-deps --only-binary=:all: --python-version 3.10 --platform manylinux_2_17_x86_64 tensorrt==8.6.0 -d .
pip download -q --no-deps --only-binary=:all: --python-version 3.11 --platform manylinux_2_17_x86_64 tensorrt_bindings==8.6.1 -d .
(cd x && unzip -q -o ../tensorrt-8.6.0-*.whl && unzip -q -o ../tensorrt_bindings-8.6.1-*.whl)
nm -D --undefined-only x/tensorrt/*.so* | grep -o '[A-Za-z0-9_]*@libcu[A-Za-z]*\.so\.[0-9]*' | sort -u > stubs/syms.txt
for lib in libcublas.so.12 libcublasLt.so.12 libcudnn.so.8; do
  grep "@$lib\$" stubs/syms.txt | cut -d@ -f1 | sed 's/.*/int &(void){return 1;}/' > stubs/$lib.c
  echo "$lib { global: *; };" > stubs/$lib.map
  gcc -shared -fPIC -O1 -o stubs/$lib stubs/$lib.c -Wl,-soname,$lib -Wl,--version-script=stubs/$lib.map
done
cp $PY/bin/python3.11 py311/bin/ && cp $PY/lib/libpython3.11.so.1.0 py311/lib/
(cd $PY/lib && tar cf - --exclude=site-packages --exclude=test --exclude=idlelib --exclude=tkinter --exclude=__pycache__ \
  --exclude=turtledemo --exclude=ensurepip --exclude=lib2to3 --exclude='config-3.11*' python3.11) | tar xf - -C py311/lib
pip install -q --target site311 --python-version 3.11 --implementation cp --platform manylinux_2_28_x86_64 \
  --platform manylinux_2_17_x86_64 --only-binary=:all: numpy pillow tokenizers typer tqdm "cuda-python>=12.6,<13" onnxruntime
(cd site311 && rm -rf hf_xet* huggingface_hub* httpx2* httpcore2* anyio* truststore* yaml _yaml pyyaml* fsspec* filelock* h11* idna* bin)
cp $TINY/{config.json,tokenizer.json,tokenizer_config.json,preprocessor_config.json,chat_template.jinja} tinycfg/
tar cf - py311 site311 stubs/*.so.* tinycfg | zstd -q -T0 -19 -f -o env.tar.zst
(cd x && tar cf - tensorrt/lib* tensorrt_bindings) | zstd -q -T0 -19 --long=30 -f -o trtlibs.tar.zst
cat env.tar.zst trtlibs.tar.zst > payload && sha256sum payload > payload.sha256
rm -rf parts && mkdir parts && split -b 40000000 -d -a 2 payload parts/part-
cp $HERE/{device_setup.sh,tiny_exports.sh,emb_export.sh,emb_engines.sh,py311} parts/
# carried with part-00 (device_setup.sh reads them from /tmp/p); the GPU image may lack zstd: carry this one
stat -c %s env.tar.zst > parts/env.size  # where device_setup.sh splits the payload
cp x/tensorrt/__init__.py payload.sha256 "$(command -v zstd)" parts/
cp -L /lib/x86_64-linux-gnu/liblz4.so.1 /lib/x86_64-linux-gnu/liblzma.so.5 parts/
