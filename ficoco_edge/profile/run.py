"""`profile_report`: one JSON-ready report for a mode (llmviewer | physical | measured), with the
paper comparison (llmviewer) and device predictions (--device) attached."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from ficoco_edge.arch import Arch
from ficoco_edge.errors import UsageError
from ficoco_edge.profile import paper
from ficoco_edge.profile.devices import DeviceProfile, read_live_memory
from ficoco_edge.profile.footprint import activation_peak_bytes, resident_weight_bytes
from ficoco_edge.profile.measure import MeasureSettings
from ficoco_edge.profile.roofline import predict
from ficoco_edge.profile.tables import Setting, device_rows, llmviewer_rows, physical_rows, schedule_summary

MODES = ("llmviewer", "physical", "measured")
NOTES = {
    "llmviewer": [
        "LLM-Viewer count (design.md): LLM prefill only, full (non-causal) attention, multi-head KV width; "
        "W=A=KV bits at int8/int4, as the paper counts. memory_access_gb is bytes moved by the prefill "
        "(the paper's 'Total Memory'), not resident memory; resident_gb is weights + KV as held.",
        "tflops_labelled: the paper's convention for INT8/INT4 rows (FP16 count x bits/16); the ops do not change.",
    ],
    "physical": [
        "cost.physical_cost: causal attention, grouped-query KV, vision tower + projector, LM head on the last "
        "position. Quantization is weight-only (activations and KV 16-bit unless --kv-bits), as bitsandbytes and "
        "the exported ONNX engines run it.",
    ],
    "measured-cpu": [
        "onnxruntime on the CPU, each method x quant export in a fresh process (ficoco-edge bench's worker): "
        "peak RSS is that process's VmHWM; times are medians; TTFT = image file in -> first token.",
        "LLM tokens per layer: the visual tokens the LLM's last layer keeps (text tokens come on top).",
    ],
    "measured": [
        "Random weights (no checkpoint): memory and time do not depend on the values, except LLM.int8's "
        "outlier path (int8), which sees few outliers here. HF transformers generate(), SDPA attention, eager loop.",
        "activation peak: peak allocated during a prefill without a KV cache - allocated before it "
        "(bitsandbytes adds its own buffers: LLM.int8 keeps int8 copies and outlier columns of activations).",
        "weights: allocated after building (and quantizing), so it includes the CUDA allocator's rounding of "
        "large tensors to 2 MiB blocks.",
    ],
}


@dataclass(frozen=True)
class GPURun:
    """Measured-mode options: torch device, optional checkpoint, and how each config is run."""

    gpu: str = "cuda"
    checkpoint: str | None = None
    settings: MeasureSettings = MeasureSettings()


def profile_report(mode: str, setting: Setting, device: DeviceProfile | None = None,
                   gpu_run: GPURun | None = None, command: str = "") -> dict:
    """The report of one `ficoco-edge profile` run as a JSON-ready dict."""
    if mode not in MODES:
        raise UsageError(f"unknown mode {mode!r}; choose one of: {', '.join(MODES)}")
    report = {"command": command, "mode": mode, **_setting_dict(setting)}
    if mode == "llmviewer":
        report["rows"] = llmviewer_rows(setting)
        report["paper_source"] = paper.SOURCE
        report["paper"] = paper.compare_all(setting.arch.name)
    elif mode == "physical":
        report["rows"] = physical_rows(setting)
    else:
        gpu_run = gpu_run or GPURun()
        if gpu_run.gpu == "cpu":
            from ficoco_edge.profile.cpu import cpu_measured_rows

            report["environment"], report["rows"] = cpu_measured_rows(setting)
            # what was run: the benchmark's prompt, each export's own KV dtype (the schedules stay
            # those of the budget, which is counted with the default 60 text tokens)
            prompt = report["environment"]["prompt_text_tokens"]
            report.update(text_tokens=prompt, context=prompt, kv_bits=None)
        else:
            report["environment"], report["rows"] = measured_rows(setting, gpu_run, device)
    if device is not None:
        report["device"] = device_section(setting, device)
    report["notes"] = NOTES["measured-cpu" if gpu_run is not None and gpu_run.gpu == "cpu" else mode]
    return report


def _setting_dict(setting: Setting) -> dict:
    return {"model": setting.arch.name, "methods": list(setting.methods), "quants": list(setting.quants),
            "budget_tflops": setting.budget, "keep": setting.keep, "batch": setting.batch,
            "text_tokens": setting.text_tokens, "context": setting.context or setting.text_tokens,
            "kv_bits": setting.kv_bits, "llm_layer": setting.llm_layer,
            "schedules": {m: schedule_summary(setting.schedule(m), setting.arch, setting.text_tokens)
                          for m in setting.methods}}


def device_section(setting: Setting, device: DeviceProfile) -> dict:
    """The device profile, live memory (jtop, on a Jetson) and per method x quant predictions.

    With live memory the verdict uses what is free now plus nothing reserved, else the profile's
    memory_gib - reserved_gib.
    """
    live = read_live_memory() if device.unified_memory else None
    usable = live.free_bytes if live is not None else None
    return {"profile": asdict(device), "usable_bytes": usable or device.usable_bytes,
            "live_memory": asdict(live) if live is not None else None,
            "rows": device_rows(setting, device, usable)}


def measured_rows(setting: Setting, gpu_run: GPURun, device: DeviceProfile | None) -> tuple[dict, list[dict]]:
    """(environment, rows): every quant x method measured on the GPU, with the formulas' predictions
    beside each measurement (and the device's ceilings when a profile is given)."""
    from ficoco_edge.profile import gpu as gpu_mod
    from ficoco_edge.profile.measure import measure_quant

    gpu_mod.require_cuda(gpu_run.gpu)
    if any(q != "fp16" for q in setting.quants):
        gpu_mod.require_bitsandbytes()
    arch = setting.arch
    if gpu_run.checkpoint is None:
        make = lambda: gpu_mod.build_random(arch, gpu_run.gpu, gpu_run.settings.seed)  # noqa: E731
    else:
        make = lambda: gpu_mod.load_checkpoint(gpu_run.checkpoint, gpu_run.gpu)  # noqa: E731
    settings = replace(gpu_run.settings, text_tokens=setting.text_tokens, batch=setting.batch)
    pairs = [(m, setting.schedule(m)) for m in setting.methods]
    rows = []
    for quant in setting.quants:
        for row in measure_quant(make, arch, quant, pairs, settings):
            rows.append(_with_predictions(row, setting, arch, device))
    return gpu_mod.environment(gpu_run.gpu), rows


def _with_predictions(row: dict, setting: Setting, arch: Arch, device: DeviceProfile | None) -> dict:
    tokens = row["llm_tokens_per_layer"]
    row = {**row, "weights_predicted_bytes": resident_weight_bytes(arch, row["quant"]),
           "activation_estimate_bytes": activation_peak_bytes(arch, tokens, setting.batch),
           "llm_tokens_per_layer": _compact(tokens), "kv_tokens_per_layer": _compact(row["kv_tokens_per_layer"])}
    if device is not None:
        p = predict(setting.workload(row["method"], row["quant"]), device)
        row["ttft_ceiling_ms"] = round(p.ttft_s * 1e3, 2)
        row["decode_ceiling_tokens_per_s"] = round(p.decode_tokens_per_s, 1)
    return row


def _compact(tokens: list[int]) -> str:
    """[636, 636, 79, ..., 79] -> '636x2, 79x30'."""
    runs: list[list[int]] = []
    for t in tokens:
        if runs and runs[-1][0] == t:
            runs[-1][1] += 1
        else:
            runs.append([t, 1])
    return ", ".join(f"{t}x{n}" for t, n in runs)
