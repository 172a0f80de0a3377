"""The export format: `manifest.json` beside the graphs. Export writes it; the runtime reads only it.

No torch here: the runtime must import this on a machine without the training stack.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from ficoco_edge.errors import UsageError

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
REQUIRED_FIELDS = {"model": str, "method": str, "quant": str, "visual_tokens": int, "llm_visual_tokens_per_layer": list,
                   "llm": dict, "prompt": dict, "preprocess": dict, "graphs": dict, "embed_tokens": str,
                   "tokenizer": str, "files": dict}


class ManifestError(UsageError):
    """A missing, corrupted or incompatible export."""


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_hashes(directory: Path, names: list[str]) -> dict[str, str]:
    return {name: sha256(directory / name) for name in sorted(names)}


def write_manifest(directory: Path, manifest: dict) -> None:
    tmp = directory / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, directory / MANIFEST)


def _check_fields(path: Path, manifest: dict) -> None:
    """Every field the runtime reads is there with its type, and `files` covers every file it opens."""
    wrong = [key for key, kind in REQUIRED_FIELDS.items() if not isinstance(manifest.get(key), kind)]
    if wrong:
        raise ManifestError(f"{path} lacks {', '.join(wrong)} (or has the wrong type); "
                            f"re-export with `ficoco-edge export --force`")
    graph_files = [g.get("file") if isinstance(g, dict) else None for g in manifest["graphs"].values()]
    if "llm_graph" in manifest:  # prefill + decode as one graph (export/combine.py)
        combined = manifest["llm_graph"]
        if not isinstance(combined, dict) or not {"file", "switch", "decode_prefix"} <= combined.keys():
            raise ManifestError(f"{path} has a malformed llm_graph; re-export with `ficoco-edge export --force`")
        graph_files.append(combined["file"])
    unlisted = [f for f in (*graph_files, manifest["embed_tokens"], manifest["tokenizer"]) if f not in manifest["files"]]
    if unlisted:
        raise ManifestError(f"{path} lists no sha256 for {', '.join(map(str, unlisted))}; "
                            f"re-export with `ficoco-edge export --force`")


def read_manifest(directory: Path, verify: bool = True) -> dict:
    """Load and check an export: schema version, then every listed file's sha256."""
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise ManifestError(f"{directory} holds no {MANIFEST}; create an export with `ficoco-edge export`")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{path} is not valid JSON ({exc}); re-export with `ficoco-edge export --force`") from exc
    if not isinstance(manifest, dict):
        raise ManifestError(f"{path} is not an export manifest (a JSON object); re-export with `ficoco-edge export --force`")
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ManifestError(f"{path} has schema version {version}; this ficoco-edge reads {SCHEMA_VERSION}: re-export it")
    _check_fields(path, manifest)
    if verify:
        for name, digest in manifest["files"].items():
            if not (Path(directory) / name).is_file():
                raise ManifestError(f"{directory}/{name} is missing; re-export with `ficoco-edge export --force`")
            if sha256(Path(directory) / name) != digest:
                raise ManifestError(f"{directory}/{name} does not match its sha256 in the manifest (corrupted or edited)")
    return manifest
