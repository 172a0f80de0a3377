"""`ficoco-edge build-engine DIR`: TensorRT engines from a `--target trt` export.

Each graph is parsed by TensorRT's ONNX parser and built with one optimization profile over its
dynamic axes (prefill: the sequence = image tokens + text; decode: each layer's cache capacity
C_l = S_l + new tokens, with S_l = the layer's visual tokens from the manifest + text). The
engines are written beside the graphs (temporary file, then rename) and recorded in the manifest
under "engines" (file, sha256, precision, strongly_typed, profiles, tensorrt_version, opt_level,
dynamic_shape_compiler: False where TensorRT 8.6 built it only with that compiler off) and "files";
the manifest itself is rewritten atomically.

Precision. An fp32 export is built weakly typed: `--fp16` lets TensorRT pick fp16 kernels in the
vision graph (its LLM graphs stay fp32: see plan_precision), and `--int8` is refused (TensorRT's
INT8 needs scales; an int8 export carries them). fp16 / int8 /
int4 exports fix their LLM graphs' types (fp16 activations, Q/DQ weights), so those graphs are
built strongly typed and the vision graph (fp32 ONNX) gets the FP16 flag.

Only the pure-Python parts run without TensorRT (profiles, checks); see README "TensorRT".
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ficoco_edge.errors import UsageError
from ficoco_edge.manifest import read_manifest, sha256, write_manifest

GET_TENSORRT = ("the TensorRT Python package is not installed: on a Jetson it comes with JetPack "
                "(sudo apt install nvidia-jetpack); on an x86 machine with an NVIDIA GPU run `pip install tensorrt`")


class EngineBuildError(RuntimeError):
    """TensorRT could not parse a graph or build its engine."""


@dataclass(frozen=True)
class TextRange:
    """Text tokens (prompt besides the image) the engines accept, and decode steps per prompt."""

    min: int = 1
    opt: int = 64
    max: int = 512
    new_tokens: int = 64

    def check(self) -> None:
        if not 1 <= self.min <= self.opt <= self.max:
            raise UsageError(f"text lengths must satisfy 1 <= --min-text <= --opt-text <= --max-text "
                             f"(got {self.min}, {self.opt}, {self.max})")
        if self.new_tokens < 1:
            raise UsageError(f"--max-new-tokens must be at least 1 (got {self.new_tokens})")


def axis_value(manifest: dict, axis: str | None, which: str, text: TextRange) -> int:
    """Size of a named dynamic axis at profile point `which` (min / opt / max)."""
    tokens = getattr(text, which)
    if axis == "sequence":
        return manifest["visual_tokens"] + tokens
    if isinstance(axis, str) and axis.startswith("capacity_"):
        visual = manifest["llm_visual_tokens_per_layer"][int(axis.split("_")[1])]
        return visual + tokens + (1 if which == "min" else text.new_tokens)
    raise UsageError(f"the manifest has a dynamic axis {axis!r} build-engine does not know; re-export with this "
                     "version of ficoco-edge")


def profiles(manifest: dict, text: TextRange = TextRange()) -> dict[str, dict[str, dict[str, list[int]]]]:
    """graph -> input with a dynamic axis -> {"min", "opt", "max"} shapes; {} for static graphs."""
    text.check()
    out = {}
    for name, graph in manifest["graphs"].items():
        out[name] = {
            spec["name"]: {which: [d if isinstance(d, int) else axis_value(manifest, d, which, text)
                                   for d in spec["shape"]] for which in ("min", "opt", "max")}
            for spec in graph["inputs"] if not all(isinstance(d, int) for d in spec["shape"])
        }
    return out


def plan_precision(manifest: dict, fp16: bool, int8: bool) -> dict[str, tuple[str, bool]]:
    """graph -> (precision, strongly_typed); raises UsageError for a flag the export cannot honour."""
    quant = manifest["quant"]
    if fp16 and int8:
        raise UsageError("choose one of --fp16 and --int8")
    if int8 and quant == "fp32":
        raise UsageError("--int8 needs INT8 weights with their scales in the graphs: re-export with "
                         "`ficoco-edge export --quant int8 --target trt` and build that directory")
    if int8 and quant != "int8":
        raise UsageError(f"this export's LLM weights are {quant} and fix its precision; run build-engine without --int8")
    vision = "fp16" if fp16 or quant != "fp32" else "fp32"
    # --fp16 leaves an fp32 export's LLM graphs in fp32: with TensorRT free to pick fp16 for every
    # layer, the embedded model's prefill logits matched onnxruntime's in no token (TensorRT 8.6,
    # H100; docs/benchmarks.md). fp16 LLM graphs come from `--quant fp16` (typed, TensorRT 10).
    llm = ("fp32", False) if quant == "fp32" else (quant, True)
    return {name: (vision, False) if name == "vision" else llm for name in manifest["graphs"]}


def check_export(directory: Path) -> dict:
    """The export's manifest, once it is known to be a TensorRT-ready export."""
    directory = Path(directory)
    if not directory.is_dir():
        raise UsageError(f"{directory} is not a directory; give an export made by `ficoco-edge export --target trt`")
    manifest = read_manifest(directory)
    if manifest.get("target") != "trt":
        raise UsageError(f"{directory} is an onnxruntime export (--target {manifest.get('target')}) with onnxruntime-only "
                         "ops; re-export it with --target trt")
    problems = {g: p for g, p in manifest.get("tensorrt_problems", {}).items() if p}
    if problems:
        first = next(iter(problems.items()))
        raise UsageError(f"{directory}: TensorRT would reject {', '.join(problems)} ({first[0]}: {first[1][0]}); "
                         "see tensorrt_problems in its manifest.json")
    return manifest


def import_tensorrt():
    try:
        import tensorrt
    except (ImportError, OSError):  # OSError: the package is there but libnvinfer is not
        raise UsageError(GET_TENSORRT) from None
    return tensorrt


def build_engines(directory: Path, fp16: bool = False, int8: bool = False, text: TextRange = TextRange(),
                  opt_level: int | None = None) -> dict:
    """Build and record an engine per graph of the export at `directory`; returns the manifest.
    opt_level: TensorRT's builder optimization level 0-5 (None: TensorRT's default, 3)."""
    if opt_level is not None and not 0 <= opt_level <= 5:
        raise UsageError(f"--opt-level must be 0 to 5 (TensorRT's builder optimization level), got {opt_level}")
    directory = Path(directory)
    manifest = check_export(directory)
    precisions = plan_precision(manifest, fp16, int8)
    shapes = profiles(manifest, text)
    trt = import_tensorrt()
    engines = {}
    for name, graph in manifest["graphs"].items():
        precision, typed = precisions[name]
        print(f"building {name}.engine ({precision}; an LLM graph can take TensorRT 10-20 minutes)", flush=True)
        started = time.perf_counter()
        plan, compiler = build_engine(trt, directory / graph["file"], shapes[name], precision, typed, opt_level)
        print(f"built {name}.engine in {time.perf_counter() - started:.0f} s", flush=True)
        file = f"{name}.engine"
        _write_atomically(directory / file, plan)
        engines[name] = {"file": file, "sha256": sha256(directory / file), "precision": precision,
                         "strongly_typed": typed, "profiles": shapes[name], "tensorrt_version": trt.__version__,
                         "opt_level": opt_level, "dynamic_shape_compiler": compiler}
    manifest["engines"] = engines
    manifest["engine_text_range"] = asdict(text)
    manifest["files"].update({e["file"]: e["sha256"] for e in engines.values()})
    write_manifest(directory, manifest)
    return manifest


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def network_flags(trt, strongly_typed: bool) -> int:
    """create_network's flags: STRONGLY_TYPED (TensorRT >= 9) for typed graphs; EXPLICIT_BATCH on
    TensorRT 8 (JetPack 5 and 6.0), whose ONNX parser fills explicit-batch networks only (10 always is)."""
    names = trt.NetworkDefinitionCreationFlag
    typed = getattr(names, "STRONGLY_TYPED", None)
    if strongly_typed and typed is None:
        raise UsageError(f"TensorRT {trt.__version__} cannot build typed (fp16/int8/int4) graphs: use TensorRT 10 "
                         "or later, or build an fp32 export (--quant fp32 --target trt) with --fp16")
    flags = 1 << int(typed) if strongly_typed else 0
    if int(trt.__version__.split(".")[0]) < 10:
        flags |= 1 << int(names.EXPLICIT_BATCH)
    return flags


def build_engine(trt, path: Path, shapes: dict[str, dict[str, list[int]]], precision: str, strongly_typed: bool,
                 opt_level: int | None = None) -> tuple[bytes, bool]:
    """Serialized engine for the ONNX graph at `path` (TensorRT 8.6+ Python API), and whether TensorRT
    8.6's dynamic-shape compiler stayed on (False: the build that used it failed; True on TensorRT 10)."""
    logger = trt.Logger(trt.Logger.WARNING)
    try:
        builder = trt.Builder(logger)
    except TypeError:  # the binding's factory returned null: TensorRT found no usable GPU (its log says why)
        raise UsageError("TensorRT could not start a builder (no usable NVIDIA GPU or driver; its log above says "
                         "why): run build-engine on the machine with the GPU that will run the engines") from None
    network = builder.create_network(network_flags(trt, strongly_typed))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(path)):  # reads external data beside the file too
        errors = "; ".join(str(parser.get_error(i)) for i in range(min(parser.num_errors, 3)))
        raise EngineBuildError(f"TensorRT could not parse {path.name}: {errors}")
    config = builder.create_builder_config()
    if precision == "fp16" and not strongly_typed:  # typed networks take their precision from the graph
        config.set_flag(trt.BuilderFlag.FP16)
    if precision == "fp32" and hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)  # on by default; fp32 means fp32, as onnxruntime computes it
    if opt_level is not None:
        config.builder_optimization_level = opt_level
    if shapes:
        profile = builder.create_optimization_profile()
        for name, shape in shapes.items():
            profile.set_shape(name, shape["min"], shape["opt"], shape["max"])
        config.add_optimization_profile(profile)
    serialized, compiler = builder.build_serialized_network(network, config), True
    if serialized is None and _dynamic_shape_compiler_off(trt, config):
        compiler = False
        print(f"{path.name}: TensorRT {trt.__version__} could not build it; trying again without its dynamic-shape "
              "compiler (preview feature FASTER_DYNAMIC_SHAPES_0805 off), which TensorRT 8.6's internal "
              "errors on dynamic shapes come from", flush=True)
        serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineBuildError(f"TensorRT could not build an engine for {path.name} (its log above says why)")
    return bytes(serialized), compiler


def _dynamic_shape_compiler_off(trt, config) -> bool:
    """Switch off TensorRT 8.6's DL compiler for dynamic shapes (on by default there; TensorRT 10
    has no such switch); returns whether it was on. Its graph compiler stops on FiCoCo-L's
    prefill with an internal error ("Could not find any implementation for node {ForeignNode..."),
    the plain builder does not."""
    feature = getattr(getattr(trt, "PreviewFeature", None), "FASTER_DYNAMIC_SHAPES_0805", None)
    if feature is None or not config.get_preview_feature(feature):
        return False
    config.set_preview_feature(feature, False)
    return True
