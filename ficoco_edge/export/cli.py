"""The library call behind `ficoco-edge export`."""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
import sys
from pathlib import Path

from ficoco_edge import __version__
from ficoco_edge.errors import UsageError
from ficoco_edge.manifest import MANIFEST, read_manifest
from ficoco_edge.paths import cache_root


def default_out(model: str, method: str, budget: float | None, keep: int | None, quant: str, target: str) -> Path:
    """./exports/<model>-<method>-<budget|keep>-<quant>[-trt]"""
    size = f"b{budget:g}" if budget is not None else (f"k{keep}" if keep is not None else "full")
    name = Path(model).stem if model.endswith(".safetensors") else Path(model).name
    return Path("exports") / f"{name}-{method}-{size}-{quant}{'-trt' if target == 'trt' else ''}"


def run_export(model: str, method: str, budget: float | None, keep: int | None, quant: str, target: str,
               out: Path | None, force: bool, announce: str | None = None,
               calibration: str | None = None) -> tuple[dict, Path]:
    """Export after checking the settings; `announce` is printed once the model has loaded.
    `calibration`: see calibration_samples."""
    from ficoco_edge.export.exporter import check_export_out, export
    from ficoco_edge.export.quantize import check_quant
    from ficoco_edge.models.loading import load
    from ficoco_edge.plan import solve_for_method

    check_quant(quant, target)
    if method != "none" and budget is None and keep is None:
        raise UsageError("give --budget B (TFLOPs) or --keep N: an export fixes its token counts")
    schedule = solve_for_method(method, budget, keep)
    out = out or default_out(model, method, budget, keep, quant, target)
    check_export_out(out, force)  # before the slow model load
    samples = calibration_samples(model, quant, target, calibration)
    terminal = sys.stderr.isatty()  # progress bars redraw lines: in logs and pipes they are noise
    vlm = load(model, progress=terminal)
    if announce:
        print(announce, file=sys.stderr)
    return export(vlm, method, schedule, out, budget, force, quant, target, progress=terminal,
                  calibration=samples), out


def calibration_samples(model: str, quant: str, target: str, calibration: str | None) -> list | None:
    """Prompts for the int8 onnxruntime export's outlier smoothing: `calibration` ('easy-vqa': its
    train split, a .jsonl of {"image", "question"} lines, or 'none'), by default easy-VQA for the embedded model
    (its own domain) where the easy-vqa package is installed, and none for other models (their
    down projections stay 8-bit blocks)."""
    from ficoco_edge.eval.datasets import load_samples
    from ficoco_edge.export.smooth import CALIBRATION_PROMPTS

    if (quant, target) != ("int8", "ort"):
        if calibration:
            raise UsageError("--calibration applies to --quant int8 --target ort only")
        return None
    default = "easy-vqa" if model == "embedded" and importlib.util.find_spec("easy_vqa") else "none"
    source = calibration or default
    return None if source == "none" else load_samples(source, "train", limit=CALIBRATION_PROMPTS, answers=False)


def model_identity(model: str) -> str:
    """What an export's manifest records as its model: an existing path resolved (the same
    checkpoint from any working directory), else the name as given (embedded, a hub id)."""
    path = Path(model).expanduser()
    return str(path.resolve()) if model != "embedded" and model.strip() and path.exists() else model


def cached_export(model: str, method: str, budget: float | None, keep: int | None, quant: str,
                  refresh: bool = False) -> Path:
    """The export for these settings in cache_root()/exports, created on first use (or `refresh`).
    Entries are named by the model's identity (two checkpoints called `llava` in different places
    get their own); one made by another version of ficoco-edge, for another model, before the
    checkpoint's files last changed, or unreadable, is made again: the cache is ours, and newer
    versions trace faster graphs."""
    identity = model_identity(model)
    label = identity if identity == "embedded" else \
        f"{Path(identity).name}-{hashlib.sha256(identity.encode()).hexdigest()[:10]}"
    out = cache_root() / "exports" / default_out(label, method, budget, keep, quant, "ort").name
    if refresh or _stale(out, identity):
        if out.is_dir() and not (out / MANIFEST).is_file():  # a broken cache entry: ours to remove
            shutil.rmtree(out)
        run_export(model, method, budget, keep, quant, "ort", out, force=True,
                   announce=f"creating {out} (first use of these settings with ficoco-edge {__version__}; "
                            "reused afterwards)")
    return out


def _stale(directory: Path, identity: str) -> bool:
    try:
        manifest = read_manifest(directory, verify=False)
    except UsageError:  # ManifestError: missing, corrupted, another schema
        return True
    if manifest.get("tool_version") != __version__ or manifest.get("model") != identity:
        return True
    return _newest_change(Path(identity)) > (directory / MANIFEST).stat().st_mtime  # the checkpoint was replaced


def _newest_change(model: Path) -> float:
    """Latest modification time of a local checkpoint's files (a directory's top level, or the file);
    0 for names that are not paths (embedded, hub ids: their content is fixed by version / revision)."""
    if not model.is_absolute() or not model.exists():
        return 0.0
    files = [f for f in model.iterdir() if f.is_file()] if model.is_dir() else [model]
    return max((f.stat().st_mtime for f in files), default=0.0)
