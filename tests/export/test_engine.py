"""`ficoco-edge build-engine`: what runs without TensorRT — optimization profiles read from a
manifest, precision rules, refusals (missing directory, onnxruntime export, TensorRT problems) and
the one-line error saying how to get TensorRT. Engines themselves are not built here (no GPU)."""

import sys

import pytest

from ficoco_edge.errors import UsageError
from ficoco_edge.export import engine
from ficoco_edge.manifest import SCHEMA_VERSION, sha256, write_manifest
from tests.helpers import run_cli


def fake_manifest(target="trt", quant="int4", problems=None) -> dict:
    """The parts of an export's manifest build-engine reads (a 2-layer LLM, FiCoCo-L after layer 0)."""
    past = [{"name": f"past_{kind}_{i}", "shape": [1, 3, f"capacity_{i}", 64], "dtype": "float16"}
            for i in range(2) for kind in ("key", "value")]
    return {
        "schema_version": SCHEMA_VERSION, "target": target, "quant": quant, "visual_tokens": 55,
        "llm_visual_tokens_per_layer": [55, 20],
        "graphs": {"vision": {"file": "vision.onnx", "inputs": [{"name": "pixel_values", "shape": [1, 3, 336, 336]}]},
                   "prefill": {"file": "prefill.onnx", "inputs": [{"name": "inputs_embeds", "shape": [1, "sequence", 576]},
                                                                  {"name": "image_start", "shape": []}]},
                   "decode": {"file": "decode.onnx", "inputs": [{"name": "inputs_embeds", "shape": [1, 1, 576]},
                                                                {"name": "position", "shape": [1, 1]},
                                                                {"name": "past_lengths", "shape": [2]}, *past]}},
        "tensorrt_problems": problems or {"vision": [], "prefill": [], "decode": []}, "files": {},
        "model": "embedded", "method": "ficoco-l", "llm": {}, "prompt": {}, "preprocess": {},
        "embed_tokens": "embed_tokens.npy", "tokenizer": "tokenizer.json",
    }


def write_export(directory, manifest: dict) -> None:
    """The manifest plus a placeholder for every file it names, with their sha256 (build-engine
    checks them before reading the graphs)."""
    names = [g["file"] for g in manifest["graphs"].values()] + [manifest["embed_tokens"], manifest["tokenizer"]]
    for name in names:
        (directory / name).write_bytes(name.encode())
    write_manifest(directory, {**manifest, "files": {name: sha256(directory / name) for name in names}})


def test_profiles_come_from_the_manifest():
    shapes = engine.profiles(fake_manifest(), engine.TextRange(min=4, opt=30, max=100, new_tokens=16))
    assert shapes["vision"] == {}
    assert shapes["prefill"] == {"inputs_embeds": {"min": [1, 59, 576], "opt": [1, 85, 576], "max": [1, 155, 576]}}
    assert set(shapes["decode"]) == {"past_key_0", "past_value_0", "past_key_1", "past_value_1"}
    # layer l's cache: its own visual tokens + text + new tokens (at least one new token at min)
    assert shapes["decode"]["past_key_1"] == {"min": [1, 3, 25, 64], "opt": [1, 3, 66, 64], "max": [1, 3, 136, 64]}


@pytest.mark.parametrize("text, message", [(engine.TextRange(min=0), "min-text"),
                                           (engine.TextRange(opt=600), "max-text"),
                                           (engine.TextRange(new_tokens=0), "max-new-tokens")])
def test_bad_text_range(text, message):
    with pytest.raises(UsageError, match=message):
        engine.profiles(fake_manifest(), text)


def test_precision_rules():
    plan = engine.plan_precision
    assert plan(fake_manifest(quant="fp32"), False, False) == {g: ("fp32", False) for g in ("vision", "prefill", "decode")}
    assert plan(fake_manifest(quant="fp32"), True, False) == {"vision": ("fp16", False), "prefill": ("fp32", False),
                                                              "decode": ("fp32", False)}  # fp16 LLM: --quant fp16
    assert plan(fake_manifest(quant="int4"), False, False) == {"vision": ("fp16", False), "prefill": ("int4", True),
                                                               "decode": ("int4", True)}
    assert plan(fake_manifest(quant="int8"), False, True)["decode"] == ("int8", True)
    for quant, fp16, int8, message in [("fp32", False, True, "--quant int8 --target trt"),
                                       ("int4", False, True, "without --int8"), ("fp32", True, True, "one of")]:
        with pytest.raises(UsageError, match=message):
            plan(fake_manifest(quant=quant), fp16, int8)


@pytest.mark.parametrize("manifest, message", [
    (None, "is not a directory"),
    (fake_manifest(target="ort"), "re-export it with --target trt"),
    (fake_manifest(problems={"vision": [], "prefill": ["/TopK: input 1 of TopK must be a constant"], "decode": []}),
     "TensorRT would reject prefill"),
])
def test_exports_build_engine_refuses(monkeypatch, capsys, tmp_path, manifest, message):
    directory = tmp_path / "export"
    if manifest is not None:
        directory.mkdir()
        write_export(directory, manifest)
    code, _, err = run_cli(monkeypatch, capsys, "build-engine", str(directory))
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_missing_tensorrt_says_how_to_get_it(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # `import tensorrt` raises ImportError
    write_export(tmp_path, fake_manifest())
    code, _, err = run_cli(monkeypatch, capsys, "build-engine", str(tmp_path), "--fp16")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "JetPack" in err and "pip install tensorrt" in err
    assert "engines" not in (tmp_path / "manifest.json").read_text()


class FakeTensorRT:
    """Just the TensorRT 10 Python API build_engine calls, recording what it was asked."""

    __version__ = "10.0.0-fake"

    def __init__(self):
        self.calls = []
        fake = self

        class Builder:
            def __init__(self, logger):
                pass

            def create_network(self, flags):
                return {"flags": flags}

            def create_builder_config(self):
                return type("Config", (), {"set_flag": lambda _, flag: fake.calls.append(("flag", flag)),
                                           "clear_flag": lambda _, flag: fake.calls.append(("clear", flag)),
                                           "add_optimization_profile": lambda _, p: fake.calls.append(("profile",))})()

            def create_optimization_profile(self):
                return type("Profile", (), {"set_shape": lambda _, *args: fake.calls.append(("shape", *args))})()

            def build_serialized_network(self, network, config):
                fake.calls.append(("opt_level", getattr(config, "builder_optimization_level", None)))
                return f"engine {network['flags']} {network['path']}".encode()

        class OnnxParser:
            def __init__(self, network, logger):
                self.network = network

            def parse_from_file(self, path):
                self.network["path"] = path.rsplit("/", 1)[-1]
                return True

        self.Builder, self.OnnxParser = Builder, OnnxParser
        self.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda self, level: None})
        self.NetworkDefinitionCreationFlag = type("Flags", (), {"STRONGLY_TYPED": 5})
        self.BuilderFlag = type("BuilderFlag", (), {"FP16": "FP16", "TF32": "TF32"})


def test_engines_are_written_and_recorded(monkeypatch, tmp_path):
    """The plumbing around TensorRT, with a stand-in for its API (no engine is really built)."""
    fake = FakeTensorRT()
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    write_export(tmp_path, fake_manifest(quant="int4"))
    manifest = engine.build_engines(tmp_path)
    assert (tmp_path / "prefill.engine").read_bytes() == b"engine 32 prefill.onnx"  # 1 << STRONGLY_TYPED
    assert (tmp_path / "vision.engine").read_bytes() == b"engine 0 vision.onnx"
    assert ("flag", "FP16") in fake.calls  # the fp32 vision graph of a typed export
    assert ("shape", "inputs_embeds", [1, 56, 576], [1, 119, 576], [1, 567, 576]) in fake.calls
    prefill = manifest["engines"]["prefill"]
    assert prefill["precision"] == "int4" and prefill["strongly_typed"] and prefill["tensorrt_version"] == "10.0.0-fake"
    assert manifest["files"]["prefill.engine"] == prefill["sha256"]
    assert engine.read_manifest(tmp_path)["engines"] == manifest["engines"]  # written, hashes verified
    placeholders = {"vision.onnx", "prefill.onnx", "decode.onnx", "embed_tokens.npy", "tokenizer.json"}
    assert sorted(p.name for p in tmp_path.iterdir() if p.name not in placeholders) == [
        "decode.engine", "manifest.json", "prefill.engine", "vision.engine"]


def test_tensorrt_8_gets_explicit_batch_networks_and_refuses_typed_graphs(monkeypatch, tmp_path):
    """TensorRT 8 (JetPack 5, 6.0) parses ONNX into explicit-batch networks only and has no typed networks."""
    fake = FakeTensorRT()
    fake.__version__ = "8.6.2"
    fake.NetworkDefinitionCreationFlag = type("Flags", (), {"EXPLICIT_BATCH": 0, "EXPLICIT_PRECISION": 1})
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    write_export(tmp_path, fake_manifest(quant="fp32"))
    engine.build_engines(tmp_path, fp16=True)
    assert (tmp_path / "prefill.engine").read_bytes() == b"engine 1 prefill.onnx"  # 1 << EXPLICIT_BATCH
    assert ("flag", "FP16") in fake.calls and fake.calls.count(("clear", "TF32")) == 2  # vision fp16, LLM fp32
    engine.build_engines(tmp_path)
    assert fake.calls.count(("clear", "TF32")) == 5  # fp32 engines compute in fp32, not TensorRT's default TF32
    assert engine.build_engines(tmp_path, opt_level=1)["engines"]["decode"]["opt_level"] == 1
    assert fake.calls.count(("opt_level", 1)) == 3 and ("opt_level", None) in fake.calls  # unset: TensorRT's default
    with pytest.raises(UsageError, match="--opt-level must be 0 to 5"):
        engine.build_engines(tmp_path, opt_level=6)
    write_export(tmp_path, fake_manifest(quant="int4"))
    with pytest.raises(UsageError, match=r"TensorRT 8.6.2 cannot build typed .* \(--quant fp32 --target trt\)"):
        engine.build_engines(tmp_path)


def test_tensorrt_8_6_retries_without_its_dynamic_shape_compiler(monkeypatch, capsys, tmp_path):
    """TensorRT 8.6's DL compiler for dynamic shapes stops on FiCoCo-L's prefill with an internal error;
    build_engine builds that graph again with the preview feature off, and only that graph."""
    fake = FakeTensorRT()
    fake.__version__ = "8.6.0"
    fake.NetworkDefinitionCreationFlag = type("Flags", (), {"EXPLICIT_BATCH": 0})
    fake.PreviewFeature = type("PreviewFeature", (), {"FASTER_DYNAMIC_SHAPES_0805": "dynamic"})
    features = {}

    class Config:
        builder_optimization_level = None

        def set_flag(self, flag): pass

        def clear_flag(self, flag): pass

        def add_optimization_profile(self, profile): pass

        def get_preview_feature(self, feature):
            return features.get(feature, True)  # on by default in TensorRT 8.6

        def set_preview_feature(self, feature, on):
            fake.calls.append(("preview", feature, on))
            features[feature] = on

    class Builder(fake.Builder):
        def create_builder_config(self):
            features.clear()
            return Config()

        def build_serialized_network(self, network, config):
            if network["path"] == "prefill.onnx" and features.get("dynamic", True):
                return None  # the internal error
            return super().build_serialized_network(network, config)

    fake.Builder = Builder
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    write_export(tmp_path, fake_manifest(quant="fp32"))
    built = engine.build_engines(tmp_path)["engines"]
    assert (tmp_path / "prefill.engine").read_bytes() == b"engine 1 prefill.onnx"
    assert fake.calls.count(("preview", "dynamic", False)) == 1  # vision and decode built as they were
    assert {name: e["dynamic_shape_compiler"] for name, e in built.items()} == {
        "vision": True, "prefill": False, "decode": True}  # recorded in the manifest
    out = capsys.readouterr().out
    assert "prefill.onnx: TensorRT 8.6.0 could not build it; trying again without its dynamic-shape" in out
    assert [line.split(" (")[0] for line in out.splitlines() if line.startswith("building")] == [
        "building vision.engine", "building prefill.engine", "building decode.engine"]  # progress, graph by graph

    def failing(self, network, config):
        fake.calls.append(("build", network["path"]))

    fake.Builder = type("Builder", (Builder,), {"build_serialized_network": failing})
    with pytest.raises(engine.EngineBuildError, match="could not build an engine for vision.onnx"):
        engine.build_engines(tmp_path)  # fails both ways: the error as before
    assert fake.calls.count(("build", "vision.onnx")) == 2
    del fake.PreviewFeature  # TensorRT 10: no such switch, so no second build
    fake.calls.clear()
    with pytest.raises(engine.EngineBuildError, match="could not build an engine for vision.onnx"):
        engine.build_engines(tmp_path)
    assert fake.calls.count(("build", "vision.onnx")) == 1
