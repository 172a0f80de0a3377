"""fp32 ONNX export of tiny LLaVAs: graphs pass onnx.checker, greedy generation driven by
onnxruntime equals transformers' generate on the patched model, per-layer cache lengths equal the
schedule, and the output directory is replaced safely."""

import json

import numpy as np
import onnx
import pytest
import torch

from ficoco_edge.errors import UsageError
from ficoco_edge.export import check, exporter
from ficoco_edge.export.graphs import mask_sources
from ficoco_edge.export.onnx_graphs import ExportValidationError, session
from ficoco_edge.manifest import ManifestError, read_manifest
from ficoco_edge.models.llava import apply, expand_image_tokens, remove
from tests.export.conftest import METHODS, schedule_for


@pytest.mark.parametrize("method, target", [(m, "ort") for m in METHODS] + [("ficoco-l", "trt")])
def test_ort_generation_equals_patched_model(tiny_vlm, tmp_path, method, target):
    schedule = schedule_for(method)
    manifest = exporter.export(tiny_vlm, method, schedule, tmp_path / "out", budget=1.5, target=target)
    out = tmp_path / "out"
    for graph in manifest["graphs"].values():
        onnx.checker.check_model(str(out / graph["file"]), full_check=True)
    assert read_manifest(out)["method"] == method
    # prefill and decode hold the same LLM weights: the shared file stores them once
    loaded = {name: graph["weights_bytes"] for name, graph in manifest["graphs"].items()}
    stored = (out / manifest["weights"]).stat().st_size
    assert loaded["decode"] > 0 and stored < sum(loaded.values()) - min(loaded["prefill"], loaded["decode"]) / 2
    model, image_id = tiny_vlm.model, tiny_vlm.model.config.image_token_id
    apply(model, method, schedule)
    ids = expand_image_tokens(torch.tensor([[3, 11, 12, image_id, 13, 14, 15]]), image_id, manifest["visual_tokens"])
    pixels = torch.randn(1, 3, 336, 336, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        want = model.generate(input_ids=ids, pixel_values=pixels, max_new_tokens=5, do_sample=False)[0, ids.shape[1]:]
    remove(model)
    graphs = check.Graphs(*(session(out / manifest["graphs"][g]["file"]) for g in ("vision", "prefill", "decode")))
    table = np.load(out / manifest["embed_tokens"])
    embeds, start = check.prompt_embeds(graphs, table, ids[0].numpy(), image_id, pixels.numpy())
    tokens, lengths = check.greedy(graphs, table, embeds, start, 5)
    assert tokens == want.tolist()
    text = ids.shape[1] - manifest["visual_tokens"]
    expected = schedule.llm_visual_tokens_per_layer(model.config.text_config.num_hidden_layers)
    assert [n - text for n in lengths] == manifest["llm_visual_tokens_per_layer"] == expected
    # decode builds one attention mask (one `slots < past_length` test) per distinct cache length
    decode = onnx.load(str(out / manifest["graphs"]["decode"]["file"]), load_external_data=False)
    assert sum(node.op_type == "Less" for node in decode.graph.node) == len(set(lengths)) < len(lengths)


def test_layers_with_equal_cache_lengths_share_the_first_ones_mask():
    assert mask_sources([5, 5, 3, 3, 5]) == [0, 0, 2, 2, 0]
    assert mask_sources([7]) == [0]


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
