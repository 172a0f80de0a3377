"""One weights file for all graphs of an export.

The prefill and decode graphs carry the same LLM weights (fused and quantized identically), so an
export written as self-contained .onnx files stores them twice: 2 x 540 MB for the embedded model in
fp32. Here every large initializer moves to one external-data file, `weights.bin`, each distinct
tensor (by dtype, dims and bytes) once; the graphs keep only their structure and point into it
(ONNX external data: location, offset, length). onnxruntime and TensorRT's parser read it from
beside the graph file.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import onnx
from onnx import TensorProto

WEIGHTS_FILE = "weights.bin"
MIN_BYTES = 1024  # smaller constants stay inside the graph (nothing to gain, harder to read)
ALIGN = 4096  # page-aligned offsets, so a runtime may map tensors straight from the file


def share_weights(directory: Path, files: list[str]) -> dict[str, int]:
    """Move the initializers of the graphs `files` (relative to `directory`) into one WEIGHTS_FILE,
    writing each distinct tensor once; rewrite each graph in place. Returns, per file, how many
    bytes of WEIGHTS_FILE the graph references (what a session loading it reads)."""
    directory = Path(directory)
    models = {name: onnx.load(str(directory / name)) for name in files}
    placed: dict[bytes, tuple[int, int]] = {}  # tensor key -> (offset, length) in WEIGHTS_FILE
    referenced = dict.fromkeys(files, 0)
    tmp = directory / f".{WEIGHTS_FILE}.partial"
    with open(tmp, "wb") as out:
        for name, model in models.items():
            for tensor in model.graph.initializer:
                if not _movable(tensor):
                    continue
                key = _key(tensor)
                if key not in placed:
                    out.write(b"\0" * (-out.tell() % ALIGN))
                    placed[key] = (out.tell(), len(tensor.raw_data))
                    out.write(tensor.raw_data)
                _point_to_file(tensor, *placed[key])
                referenced[name] += placed[key][1]
    os.replace(tmp, directory / WEIGHTS_FILE)
    for name, model in models.items():
        _save_in_place(model, directory / name)
    return referenced


def _movable(tensor: TensorProto) -> bool:
    return tensor.data_location != TensorProto.EXTERNAL and len(tensor.raw_data) >= MIN_BYTES


def _key(tensor: TensorProto) -> bytes:
    digest = hashlib.sha256(tensor.raw_data)
    digest.update(f"{tensor.data_type}:{list(tensor.dims)}".encode())
    return digest.digest()


def _point_to_file(tensor: TensorProto, offset: int, length: int) -> None:
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    del tensor.external_data[:]
    for key, value in (("location", WEIGHTS_FILE), ("offset", offset), ("length", length)):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, str(value)


def _save_in_place(model: onnx.ModelProto, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_bytes(model.SerializeToString())
    os.replace(tmp, path)
