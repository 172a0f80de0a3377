"""The manifest check: a broken or incomplete export is one ManifestError naming what to do."""

import json

import pytest

from ficoco_edge.manifest import REQUIRED_FIELDS, SCHEMA_VERSION, ManifestError, read_manifest, sha256


def minimal_export(directory):
    """A manifest with every field the runtime reads, over three small files."""
    for name, data in {"vision.onnx": b"v", "embed.npy": b"e", "tok.json": b"t"}.items():
        (directory / name).write_bytes(data)
    files = {name: sha256(directory / name) for name in ("vision.onnx", "embed.npy", "tok.json")}
    manifest = {"schema_version": SCHEMA_VERSION, "model": "m", "method": "none", "quant": "fp32", "visual_tokens": 4,
                "llm_visual_tokens_per_layer": [4], "llm": {}, "prompt": {}, "preprocess": {},
                "graphs": {"vision": {"file": "vision.onnx"}}, "embed_tokens": "embed.npy", "tokenizer": "tok.json",
                "files": files}
    write(directory, manifest)
    return manifest


def write(directory, manifest):
    (directory / "manifest.json").write_text(json.dumps(manifest))


def test_a_complete_manifest_is_read(tmp_path):
    written = minimal_export(tmp_path)
    assert read_manifest(tmp_path) == written


@pytest.mark.parametrize("field", list(REQUIRED_FIELDS))
def test_each_missing_field_is_named(tmp_path, field):
    manifest = minimal_export(tmp_path)
    del manifest[field]
    write(tmp_path, manifest)
    with pytest.raises(ManifestError, match=f"lacks {field} .*re-export"):
        read_manifest(tmp_path)


def test_a_file_the_runtime_opens_must_have_a_hash(tmp_path):
    manifest = minimal_export(tmp_path)
    del manifest["files"]["tok.json"]
    write(tmp_path, manifest)
    with pytest.raises(ManifestError, match="no sha256 for tok.json"):
        read_manifest(tmp_path)


@pytest.mark.parametrize("content, message", [
    (b"[1, 2]", "not an export manifest"),
    (b"\xff\xfe{}", "not valid JSON"),
    (b'{"schema_version": 1', "not valid JSON"),
    (b'{"schema_version": 99}', "schema version 99"),
])
def test_unreadable_manifests(tmp_path, content, message):
    (tmp_path / "manifest.json").write_bytes(content)
    with pytest.raises(ManifestError, match=message):
        read_manifest(tmp_path)


def test_an_edited_file_fails_its_hash(tmp_path):
    minimal_export(tmp_path)
    (tmp_path / "embed.npy").write_bytes(b"E")
    with pytest.raises(ManifestError, match="embed.npy does not match its sha256"):
        read_manifest(tmp_path)
    assert read_manifest(tmp_path, verify=False)["quant"] == "fp32"
