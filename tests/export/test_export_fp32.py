"""fp32 ONNX export of tiny LLaVAs: graphs pass onnx.checker, greedy generation driven by
onnxruntime equals transformers' generate on the patched model, per-layer cache lengths equal the
schedule, and the output directory is replaced safely."""

import json

import numpy as np
import onnx
import pytest
import torch
from transformers import AutoTokenizer

from ficoco_edge.errors import UsageError
from ficoco_edge.export import exporter
from ficoco_edge.export.onnx_graphs import ExportValidationError, session
from ficoco_edge.manifest import ManifestError, read_manifest
from ficoco_edge.models import embedded
from ficoco_edge.models.llava import apply, expand_image_tokens, remove
from ficoco_edge.models.vqa import VisionLanguageModel
from ficoco_edge.plan import solve_for_method
from ficoco_edge.runtime.preprocess import ClipPreprocess

METHODS = ["none", "ficoco-v", "ficoco-l", "ficoco-vl"]


class TinyTokenizer:
    """Just enough of a tokenizer for export (save_pretrained writes a file)."""

    def save_pretrained(self, directory):
        directory.mkdir()
        (directory / "tokenizer.json").write_text("{}")


@pytest.fixture()
def tiny_vlm(tiny_llava):
    return VisionLanguageModel("tiny", tiny_llava, TinyTokenizer(), ClipPreprocess(), embedded.PROMPT)


def schedule_for(method):
    return solve_for_method(method, 1.5) if method != "none" else solve_for_method("none")


def ort_greedy(directory, manifest, ids, image_token_id, pixel_values, steps):
    """A minimal reference driver: vision -> splice -> prefill -> per-layer buffers -> decode."""
    graphs = {name: session(directory / g["file"]) for name, g in manifest["graphs"].items()}
    table = np.load(directory / manifest["embed_tokens"])
    image = graphs["vision"].run(None, {"pixel_values": pixel_values})[0]
    start = int(np.argmax(ids == image_token_id))
    embeds = np.concatenate([table[ids[:start]][None], image, table[ids[start + image.shape[1]:]][None]], 1)
    feeds = {"inputs_embeds": embeds, "image_start": np.array(start)}
    wanted = {i["name"] for i in manifest["graphs"]["prefill"]["inputs"]}
    logits, *caches = graphs["prefill"].run(None, {k: v for k, v in feeds.items() if k in wanted})
    lengths = np.array([c.shape[2] for c in caches[::2]])
    buffers = [np.concatenate([c, np.zeros((*c.shape[:2], steps, c.shape[3]), np.float32)], 2) for c in caches]
    tokens, position = [int(logits.argmax())], embeds.shape[1]
    for _ in range(steps - 1):
        past = {f"past_{kind}_{i}": buffers[2 * i + j] for i in range(len(lengths)) for j, kind in enumerate(("key", "value"))}
        logits, *new = graphs["decode"].run(None, {"inputs_embeds": table[[tokens[-1]]][None],
                                                   "position": np.array([[position]]), "past_lengths": lengths, **past})
        for i, buf in enumerate(buffers):
            buf[:, :, lengths[i // 2]] = new[i][:, :, 0]
        lengths, position = lengths + 1, position + 1
        tokens.append(int(logits.argmax()))
    return tokens, [c.shape[2] for c in caches[::2]]


@pytest.mark.parametrize("method", METHODS)
def test_ort_generation_equals_patched_model(tiny_vlm, tmp_path, method):
    schedule = schedule_for(method)
    manifest = exporter.export(tiny_vlm, method, schedule, tmp_path / "out", budget=1.5)
    out = tmp_path / "out"
    for graph in manifest["graphs"].values():
        onnx.checker.check_model(str(out / graph["file"]), full_check=True)
    assert read_manifest(out)["method"] == method
    model, image_id = tiny_vlm.model, tiny_vlm.model.config.image_token_id
    apply(model, method, schedule)
    ids = expand_image_tokens(torch.tensor([[3, 11, 12, image_id, 13, 14, 15]]), image_id, manifest["visual_tokens"])
    pixels = torch.randn(1, 3, 336, 336, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        want = model.generate(input_ids=ids, pixel_values=pixels, max_new_tokens=5, do_sample=False)[0, ids.shape[1]:]
    remove(model)
    tokens, lengths = ort_greedy(out, manifest, ids[0].numpy(), image_id, pixels.numpy(), 5)
    assert tokens == want.tolist()
    text = ids.shape[1] - manifest["visual_tokens"]
    expected = schedule.llm_visual_tokens_per_layer(model.config.text_config.num_hidden_layers)
    assert [n - text for n in lengths] == manifest["llm_visual_tokens_per_layer"] == expected


def test_existing_export_is_kept_unless_forced(tiny_vlm, tmp_path, monkeypatch):
    out = tmp_path / "out"
    first = exporter.export(tiny_vlm, "ficoco-v", schedule_for("ficoco-v"), out, budget=1.5)
    with pytest.raises(UsageError, match="--force"):
        exporter.export(tiny_vlm, "none", schedule_for("none"), out)

    def broken(*args, **kwargs):
        raise ExportValidationError("logits: max |diff| 1 (planted)")

    monkeypatch.setattr(exporter, "validate", broken)
    with pytest.raises(ExportValidationError, match="planted"):
        exporter.export(tiny_vlm, "none", schedule_for("none"), out, force=True)
    assert read_manifest(out) == first  # the failed export left the previous one intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # and no partial directories
    monkeypatch.undo()
    second = exporter.export(tiny_vlm, "none", schedule_for("none"), out, force=True)
    assert read_manifest(out)["method"] == second["method"] == "none"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_corrupted_or_incompatible_export_is_refused(tiny_vlm, tmp_path):
    out = tmp_path / "out"
    exporter.export(tiny_vlm, "none", schedule_for("none"), out)
    with (out / "decode.onnx").open("ab") as f:
        f.write(b"x")
    with pytest.raises(ManifestError, match="decode.onnx does not match"):
        read_manifest(out)
    manifest = json.loads((out / "manifest.json").read_text())
    (out / "manifest.json").write_text(json.dumps({**manifest, "schema_version": 99}))
    with pytest.raises(ManifestError, match="schema version 99"):
        read_manifest(out)
    with pytest.raises(ManifestError, match="no manifest.json"):
        read_manifest(tmp_path)
