"""Outlier smoothing for the int8 export on a tiny LLaVA: the smoothed model computes what the
original does, the original weights come back bit for bit, the channel peaks match a direct
computation, and an int8 export with calibration prompts quantizes the down projections' inputs
(row-scaled dynamic int8) where one without keeps them as 8-bit blocks."""

import json
from dataclasses import replace

import numpy as np
import onnx
import pytest
import torch
from PIL import Image

from ficoco_edge.export import exporter
from ficoco_edge.export.cli import calibration_samples
from ficoco_edge.export.smooth import down_input_peaks, smoothed_mlps, smoothing_factors
from ficoco_edge.models.llava import find_parts
from tests.export.conftest import schedule_for


def calibration_file(tmp_path, count: int = 3):
    rng = np.random.default_rng(0)
    lines = []
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(tmp_path / f"c{i}.png")
        lines.append(json.dumps({"image": f"c{i}.png", "question": f"what is {i}?"}))  # prompts only
    (tmp_path / "calibration.jsonl").write_text("\n".join(lines) + "\n")
    return calibration_samples("tiny", "int8", "ort", str(tmp_path / "calibration.jsonl"))


@pytest.fixture()
def vlm(tiny_vlm):
    """The tiny LLaVA with a prompt that marks its own image token, so that it runs from token ids."""
    tiny_vlm.model.float().eval()
    return replace(tiny_vlm, prompt=replace(tiny_vlm.prompt, image_token_id=tiny_vlm.model.config.image_token_id))


def logits(vlm, sample):
    from ficoco_edge.runtime.images import open_image

    ids, mask = vlm.prompt_batch([sample.question])
    with torch.no_grad():
        return vlm.model(input_ids=ids, attention_mask=mask, pixel_values=vlm.pixels([open_image(sample.image)])).logits


def test_smoothing_keeps_the_model_and_restores_its_weights(vlm, tmp_path):
    samples = calibration_file(tmp_path)
    mlps = [layer.mlp for layer in find_parts(vlm.model).llm.layers]
    before = [(m.up_proj.weight.clone(), m.down_proj.weight.clone()) for m in mlps]
    want = logits(vlm, samples[0])
    peaks = down_input_peaks(vlm, samples)
    # the first layer's peaks, recomputed from its MLP inputs through gate / up by hand
    inputs, mlp = [], mlps[0]
    hook = mlp.register_forward_pre_hook(lambda module, args: inputs.append(args[0]))
    for sample in samples:
        logits(vlm, sample)
    hook.remove()
    with torch.no_grad():
        direct = torch.stack([(mlp.act_fn(mlp.gate_proj(x)) * mlp.up_proj(x)).abs().flatten(0, -2).amax(0) for x in inputs])
    assert len(peaks) == len(mlps) and torch.allclose(peaks[0], direct.amax(0), rtol=1e-5)
    with smoothed_mlps(vlm, peaks):
        s = smoothing_factors(peaks[0], before[0][1])
        assert not torch.allclose(s, torch.ones_like(s))
        assert torch.allclose(mlps[0].down_proj.weight, before[0][1] * s[None, :])
        torch.testing.assert_close(logits(vlm, samples[0]), want, rtol=1e-4, atol=1e-4)
    assert all(torch.equal(m.up_proj.weight, u) and torch.equal(m.down_proj.weight, d) for m, (u, d) in zip(mlps, before))


def test_int8_export_with_calibration_quantizes_the_down_projections(vlm, tmp_path):
    samples = calibration_file(tmp_path)
    ops = {}
    for name, calibration in (("smoothed", samples), ("blocks", None)):
        manifest = exporter.export(vlm, "none", schedule_for("none"), tmp_path / name, quant="int8",
                                   calibration=calibration)
        model = onnx.load(str(tmp_path / name / manifest["graphs"]["prefill"]["file"]), load_external_data=False)
        ops[name] = {n.op_type for n in model.graph.node}
        assert manifest.get("int8_smoothing") == ({"calibration_prompts": 3, "alpha": 0.8} if calibration else None)
        assert manifest["validation"]["next_token_agreement"] >= 0.5
    assert {"Abs", "ReduceMax"} <= ops["smoothed"] and "MatMulNBits" not in ops["smoothed"]
    assert "MatMulNBits" in ops["blocks"] and "Abs" not in ops["blocks"]
