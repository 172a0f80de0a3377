# Sourced by the onnxruntime-gpu scripts on a GPU machine without network: installs the carried wheels
# ($1: a folder of them) into /tmp/site and points the CUDA provider at the image's CUDA / cuDNN wheels' libraries.
cpu_ort=$(dirname "$(python3 -c 'import onnxruntime; print(onnxruntime.__file__)')")
python3 -m pip install -q --no-index --no-deps --target /tmp/site "$1"/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD XDG_CACHE_HOME=/tmp/cache
LD_LIBRARY_PATH=$(find "$(dirname "$cpu_ort")/nvidia" -maxdepth 3 -name lib -type d 2>/dev/null | paste -sd:)
export LD_LIBRARY_PATH
python3 -c "import onnxruntime as o; print('onnxruntime', o.__version__, o.get_available_providers())"
