"""`export(vlm, method, schedule, out)`: graphs + embedding table + tokenizer + manifest.json.

The export is written to a temporary sibling directory and renamed into place at the end, so an
error or an interrupt leaves any previous export at `out` as it was.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from ficoco_edge import __version__
from ficoco_edge.errors import UsageError
from ficoco_edge.export import check
from ficoco_edge.export import onnx_graphs as og
from ficoco_edge.export.combine import combine_llm
from ficoco_edge.export.fuse import fuse_file
from ficoco_edge.export.quantize import check_quant, quantize_graph
from ficoco_edge.export.shared_weights import WEIGHTS_FILE, share_weights
from ficoco_edge.export.smooth import ALPHA, down_input_peaks, smoothed_mlps
from ficoco_edge.export.tensorrt import tensorrt_problems
from ficoco_edge.manifest import MANIFEST, SCHEMA_VERSION, file_hashes, read_manifest, write_manifest
from ficoco_edge.models.llava import apply, find_parts, image_tokens_for, llm_arch, remove
from ficoco_edge.models.vqa import VisionLanguageModel
from ficoco_edge.outputs import check_parent
from ficoco_edge.reduction.schedule import Schedule

VALIDATION_TEXT = (5, 9)  # text tokens before / after the image span in the validation prompt
VALIDATION_CAPACITY = 4  # spare decode slots per layer in the validation cache
AGREEMENT_STEPS = 8  # greedy steps compared between fp32 and quantized graphs, per prompt
AGREEMENT_PROMPTS = (("red", "ellipse", "What color is the shape?"), ("blue", "rectangle", "What shape is in the image?"),
                     ("green", "polygon", "Describe the image."), ("yellow", "ellipse", "Is there a triangle?"))


def example_inputs(vlm: VisionLanguageModel, image_tokens: int, seed: int = 0) -> dict:
    """Fixed inputs for tracing and validation: a random image, random text around the span, and a
    decode step over a cache filled by the PyTorch prefill."""
    model = vlm.model
    gen = torch.Generator().manual_seed(seed)
    size = model.config.vision_config.image_size
    pixel_values = torch.randn(1, 3, size, size, generator=gen)
    with torch.no_grad():
        image = og.VisionGraph(model)(pixel_values)
        before, after = VALIDATION_TEXT
        ids = torch.randint(100, model.config.text_config.vocab_size, (1, before + after), generator=gen)
        text = model.get_input_embeddings()(ids)
        embeds = torch.cat([text[:, :before], image, text[:, before:]], 1)
        start = torch.tensor(before)
        prefill = og.PrefillGraph(model, image_tokens)(embeds, start)
    caches = prefill[1:]
    past = [torch.cat([c, torch.randn(*c.shape[:2], VALIDATION_CAPACITY, c.shape[3], generator=gen)], 2) for c in caches]
    return {"pixel_values": pixel_values, "inputs_embeds": embeds, "image_start": start,
            "token_embeds": text[:, -1:], "position": torch.tensor([[embeds.shape[1]]]),
            "past_lengths": torch.tensor([c.shape[2] for c in caches[::2]]), "past": past,
            "text_tokens": before + after}


def validate(model, directory: Path, graphs: dict, example: dict, image_tokens: int) -> dict:
    """Run every graph in onnxruntime and PyTorch on the example; returns max differences."""
    feeds = {
        "vision": [example["pixel_values"]],
        "prefill": [example["inputs_embeds"], example["image_start"]],
        "decode": [example["token_embeds"], example["position"], example["past_lengths"], *example["past"]],
    }
    modules = {"vision": og.VisionGraph(model), "prefill": og.PrefillGraph(model, image_tokens),
               "decode": og.DecodeGraph(model)}
    report, io = {}, {}
    for name, spec in graphs.items():
        sess = og.session(directory / spec["file"])
        io[name] = og.io_description(sess)
        declared = {i.name for i in sess.get_inputs()}  # an unused input (image_start without LLM reduction) is dropped
        got = sess.run(spec["outputs"], {k: v.numpy() for k, v in zip(spec["inputs"], feeds[name]) if k in declared})
        with torch.no_grad():
            want = modules[name](*feeds[name])
        want = want if isinstance(want, tuple) else (want,)
        report[name] = og.compare(spec["outputs"], got, list(want), og.FP32_TOLERANCE)
        if name == "prefill":
            lengths = [g.shape[2] for g in got[1::2]]
    return {"max_abs_diff": report, "io": io, "prefill_cache_lengths": lengths}


def agreement_prompts(vlm: VisionLanguageModel, graphs: check.Graphs, table: np.ndarray,
                      image_tokens: int) -> list[tuple[np.ndarray, int]]:
    """(inputs_embeds, image_start) for a few real prompts about drawn shapes."""
    from PIL import Image, ImageDraw

    prompts = []
    for colour, shape, question in AGREEMENT_PROMPTS:
        image = Image.new("RGB", (64, 64), "white")
        draw = ImageDraw.Draw(image)
        getattr(draw, shape)([(12, 12), (52, 52)] if shape != "polygon" else [(32, 8), (56, 56), (8, 56)], fill=colour)
        ids = np.array(vlm.prompt.ids(vlm.encode, question, image_tokens))
        prompts.append(check.prompt_embeds(graphs, table, ids, vlm.prompt.image_token_id, vlm.preprocess([image])))
    return prompts


def quantize_llm(vlm: VisionLanguageModel, directory: Path, graphs: dict, quant: str, target: str,
                 smoothed: bool = False) -> float:
    """Quantize prefill + decode in place; returns next-token agreement with the fp32 graphs over
    AGREEMENT_PROMPTS, up to AGREEMENT_STEPS greedy steps each (ending at the fp32 answer's stop token)."""
    def load():
        return check.Graphs(*(og.session(directory / graphs[g]["file"]) for g in ("vision", "prefill", "decode")))

    reference = load()  # sessions hold the fp32 graphs in memory
    for name in ("prefill", "decode"):
        path = directory / graphs[name]["file"]
        tmp = path.with_name(f".{path.name}.{quant}")
        quantize_graph(path, tmp, quant, target, smoothed)
        os.replace(tmp, path)
    table = np.load(directory / "embed_tokens.npy")
    candidate = load()
    prompts = agreement_prompts(vlm, reference, table, image_tokens_for(vlm.model))
    counts = [check.agreement(reference, candidate, table, e, s, AGREEMENT_STEPS, vlm.prompt.stop_ids) for e, s in prompts]
    return sum(m for m, _ in counts) / sum(n for _, n in counts)


def embedding_format(quant: str) -> str:
    """fp32 exports keep the exact table; quantized and fp16 ones halve it (np.load still gives a
    float array; the runtime casts rows to the prefill/decode input dtype)."""
    return "fp32" if quant == "fp32" else "fp16"


def write_embedding(directory: Path, model, quant: str) -> dict:
    """embed_tokens.npy (vocab, hidden) in embedding_format(quant); returns manifest["embedding"]."""
    table = model.get_input_embeddings().weight.detach().float().numpy()
    fmt = embedding_format(quant)
    np.save(directory / "embed_tokens.npy", table.astype(np.float16 if fmt == "fp16" else np.float32))
    return {"file": "embed_tokens.npy", "format": fmt, "dtype": "float16" if fmt == "fp16" else "float32",
            "shape": list(table.shape)}


def _manifest(vlm, method: str, budget: float | None, schedule: Schedule, graphs: dict, checked: dict,
              text_tokens: int, files: dict, embedding: dict) -> dict:
    arch = llm_arch(vlm.model.config)
    per_layer = [n - text_tokens for n in checked["prefill_cache_lengths"]]
    return {
        "schema_version": SCHEMA_VERSION, "tool_version": __version__, "model": vlm.name, "method": method,
        "budget_tflops": budget, "quant": "fp32", "target": "ort",
        "visual_tokens": image_tokens_for(vlm.model), "llm_visual_tokens_per_layer": per_layer,
        "schedule": asdict(schedule),
        "llm": {"layers": arch.layers, "hidden": arch.hidden, "kv_heads": arch.kv_heads,
                "head_dim": arch.head_dim, "vocab": arch.vocab,
                "max_positions": find_parts(vlm.model).llm.config.max_position_embeddings},
        "prompt": {"template": vlm.prompt.template, "image_token_id": vlm.prompt.image_token_id,
                   "stop_ids": list(vlm.prompt.stop_ids), "pad_id": vlm.prompt.pad_id,
                   "bos_token_id": vlm.prompt.bos_token_id},
        "preprocess": asdict(vlm.preprocess),
        "graphs": {name: {"file": spec["file"], "weights_bytes": spec["weights_bytes"], **checked["io"][name]}
                   for name, spec in graphs.items()},
        "weights": WEIGHTS_FILE,
        "embed_tokens": "embed_tokens.npy", "embedding": embedding, "tokenizer": "tokenizer/tokenizer.json",
        "validation": {"fp32_max_abs_diff": checked["max_abs_diff"],
                       "tolerance": asdict(og.FP32_TOLERANCE)},
        "files": files,
    }


def _write(vlm, method: str, budget: float | None, schedule: Schedule, staging: Path, quant: str,
           target: str, progress: bool, smoothing: dict | None = None) -> None:
    from tqdm.auto import tqdm

    model = vlm.model
    image_tokens = image_tokens_for(model)
    layers = find_parts(model).llm.config.num_hidden_layers
    with tqdm(total=4, desc="export", disable=not progress, bar_format="{desc}: {n}/{total} {postfix}") as bar:
        def step(name: str) -> None:
            bar.set_postfix_str(name)
            bar.update(1)

        bar.set_postfix_str("tracing")
        example = example_inputs(vlm, image_tokens)
        opset = og.TRT_OPSET if target == "trt" else og.OPSET
        graphs = og.export_all(model, image_tokens, layers, staging, example, opset, span_only=target == "trt",
                               fused_rope=target == "ort")
        if target == "trt":  # TensorRT needs constant TopK K / Slice axes: fold what static shapes allow
            og.fold_constants(staging / graphs["vision"]["file"])
            og.fold_static_shapes(staging / graphs["prefill"]["file"])
        for spec in graphs.values():  # q/k/v and gate/up as one GEMM each (validated below like the rest)
            fuse_file(staging / spec["file"])
        embedding = write_embedding(staging, model, quant)
        vlm.tokenizer.save_pretrained(staging / "tokenizer")
        step("validating fp32")
        checked = validate(model, staging, graphs, example, image_tokens)
        step(f"quantizing {quant}" if quant != "fp32" else "hashing")
        agreement = None if quant == "fp32" else quantize_llm(vlm, staging, graphs, quant, target, bool(smoothing))
        step("hashing")
        loaded = share_weights(staging, [spec["file"] for spec in graphs.values()])
        for spec in graphs.values():
            spec["weights_bytes"] = loaded[spec["file"]]
        combined = combine_llm(staging, graphs["prefill"]["file"], graphs["decode"]["file"]) if target == "ort" else None
        names = [str(p.relative_to(staging)) for p in staging.rglob("*") if p.is_file()]
        files = file_hashes(staging, names)
        step("done")
    manifest = _manifest(vlm, method, budget, schedule, graphs, checked, example["text_tokens"], files, embedding)
    manifest.update(quant=quant, target=target)
    if combined:  # prefill + decode in one onnxruntime session, its weights held once (export/combine.py)
        manifest["llm_graph"] = combined
    manifest["validation"]["next_token_agreement"] = agreement
    if smoothing:  # the int8 down projections' form depends on it (export/quantize.py)
        manifest["int8_smoothing"] = smoothing
    if target == "trt":  # what TensorRT's parser would refuse, per graph (empty lists: none found)
        manifest["tensorrt_problems"] = {name: tensorrt_problems(staging / g["file"]) for name, g in graphs.items()}
    if quant != "fp32":  # the quantized graphs' own inputs/outputs
        for name in ("prefill", "decode"):
            manifest["graphs"][name].update(og.io_description(og.session(staging / graphs[name]["file"])))
    write_manifest(staging, manifest)


def export(vlm: VisionLanguageModel, method: str, schedule: Schedule, out: Path, budget: float | None = None,
           force: bool = False, quant: str = "fp32", target: str = "ort", progress: bool = False,
           calibration: list | None = None) -> dict:
    """Export `vlm` reduced by `method` at `schedule` into directory `out`; returns the manifest.
    `calibration`: samples (.image path, .question) for the int8 onnxruntime export's outlier
    smoothing (export/smooth.py); without them its down projections stay 8-bit blocks."""
    check_quant(quant, target)
    out = Path(out)
    check_export_out(out, force)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; an export is an ordinary directory
    apply(vlm.model.float().eval(), method, schedule)
    try:
        smoothing, peaks = None, None
        if calibration and (quant, target) == ("int8", "ort"):
            peaks = down_input_peaks(vlm, calibration)
            smoothing = {"calibration_prompts": len(calibration), "alpha": ALPHA}
        with smoothed_mlps(vlm, peaks) if smoothing else nullcontext():
            _write(vlm, method, budget, schedule, staging, quant, target, progress, smoothing)
        _swap_into_place(staging, out)
        return read_manifest(out, verify=False)
    finally:
        remove(vlm.model)
        shutil.rmtree(staging, ignore_errors=True)


def check_export_out(out: Path, force: bool) -> None:
    """Refuse an --out that cannot hold the export, or whose replacement would lose something
    other than an earlier export: --force replaces exports only."""
    out = Path(out)
    check_parent(out)
    if not out.exists():
        return
    if not force:
        raise UsageError(f"{out} already exists; pass --force to replace it or choose another --out")
    if not (out / MANIFEST).is_file():
        raise UsageError(f"--out {out} exists and is not an export (no {MANIFEST}); --force only replaces "
                         f"exports: choose another --out")
    if Path.cwd().resolve().is_relative_to(out.resolve()):
        raise UsageError(f"--out {out} holds the current directory; run from elsewhere or choose another --out")


def _swap_into_place(staging: Path, out: Path) -> None:
    """Rename staging -> out; an existing out is moved aside first and deleted only afterwards."""
    if not out.exists():
        os.replace(staging, out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
    os.replace(out, old / "export")
    try:
        os.replace(staging, out)
    except OSError:
        os.replace(old / "export", out)
        raise
    finally:
        shutil.rmtree(old, ignore_errors=True)
