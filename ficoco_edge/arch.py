"""Model architectures as data: `profiles/models/*.toml` read into frozen dataclasses.

A profile has a top-level `source` line and the sections `[llm]`, `[vision]`, `[projector]`
(see `profiles/models/llava-1.5-7b.toml`). Only sizes live here: no weights, no torch.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, fields
from pathlib import Path

from ficoco_edge.errors import UsageError


@dataclass(frozen=True)
class LLMArch:
    """A Llama-family decoder: `layers` blocks of attention (`heads` query heads, `kv_heads`
    key/value heads) and a gated MLP of width `intermediate`; `vocab` rows in the LM head."""

    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    vocab: int

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @property
    def kv_width(self) -> int:
        """Width of the k (or v) projection output: kv_heads * head_dim."""
        return self.kv_heads * self.head_dim


@dataclass(frozen=True)
class VisionArch:
    """A CLIP ViT: `layers` pre-norm blocks over (image_size/patch_size)^2 patches + [CLS].

    `feature_layer` follows LLaVA's `vision_feature_layer`, an index into HF `hidden_states`
    (entry 0 = embeddings, entry i = output of layer i-1): -2 is the output of the last-but-one layer.
    """

    layers: int
    hidden: int
    intermediate: int
    heads: int
    image_size: int
    patch_size: int
    feature_layer: int

    @property
    def num_patches(self) -> int:
        """Patch tokens per image (576 for 336/14); [CLS] not included."""
        return (self.image_size // self.patch_size) ** 2

    @property
    def feature_layer_index(self) -> int:
        """0-based index of the layer whose output LLaVA uses (22 of 24 for feature_layer=-2)."""
        if self.feature_layer < 0:
            return self.layers + self.feature_layer
        return self.feature_layer - 1


@dataclass(frozen=True)
class Arch:
    """A LLaVA-style model: vision tower -> 2-layer GELU MLP projector
    (vision.hidden -> projector_hidden -> projector_hidden) -> LLM."""

    name: str
    llm: LLMArch
    vision: VisionArch
    projector_hidden: int
    source: str


def profile_folder(kind: str = "models") -> Path:
    """`ficoco_edge/_profiles/<kind>` in an installed wheel, else `<repo>/profiles/<kind>`."""
    package = Path(__file__).resolve().parent
    installed = package / "_profiles" / kind
    return installed if installed.is_dir() else package.parent / "profiles" / kind


def profile_names(kind: str = "models") -> list[str]:
    """The .toml profiles of `kind` (models, devices) by name, sorted."""
    folder = profile_folder(kind)
    return sorted(p.stem for p in folder.glob("*.toml")) if folder.is_dir() else []


def profiles_dir() -> Path:
    return profile_folder("models")


def available_archs() -> list[str]:
    """Names accepted by `load_arch`, sorted."""
    return profile_names("models")


def load_arch(name_or_path: str | Path) -> Arch:
    """Read a profile by name (`llava-1.5-7b`) or by path to a `.toml` file."""
    path = resolve_profile(name_or_path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"cannot read architecture profile {path}: {exc}") from exc
    return _arch_from_dict(path.stem, data, str(path))


def resolve_profile(name_or_path: str | Path, kind: str = "models", label: str = "architecture") -> Path:
    """A profile's .toml path from its name (in profile_folder(kind)) or a path; one-line errors."""
    text = str(name_or_path)
    if text.endswith(".toml") or "/" in text or "\\" in text:
        path = Path(text)
        if not path.is_file():
            raise UsageError(f"{label} profile not found: {path}")
        return path
    path = profile_folder(kind) / f"{text}.toml"
    if not path.is_file():
        valid = ", ".join(profile_names(kind)) or "(none found)"
        raise UsageError(f"unknown {label} {text!r}; valid names: {valid} (or a path to a .toml)")
    return path


def _arch_from_dict(name: str, data: dict, where: str) -> Arch:
    _check_keys(data, {"source", "llm", "vision", "projector"}, where, "top level")
    llm = _section(LLMArch, data, "llm", where)
    vision = _section(VisionArch, data, "vision", where)
    projector = data["projector"]
    _check_keys(projector, {"hidden"}, where, "[projector]")
    arch = Arch(name, llm, vision, _int(projector["hidden"], where, "projector.hidden"),
                str(data["source"]))
    _validate(arch, where)
    return arch


def _section(cls, data: dict, key: str, where: str):
    section = data[key]
    if not isinstance(section, dict):
        raise UsageError(f"{where}: [{key}] must be a table")
    names = {f.name for f in fields(cls)}
    _check_keys(section, names, where, f"[{key}]")
    return cls(**{n: _int(section[n], where, f"{key}.{n}") for n in names})


def _check_keys(table: dict, expected: set[str], where: str, label: str) -> None:
    missing, extra = expected - table.keys(), table.keys() - expected
    if missing or extra:
        raise UsageError(f"{where}: {label} missing {sorted(missing)}, unknown {sorted(extra)}; "
                         f"expected exactly {sorted(expected)}")


def _int(value, where: str, key: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise UsageError(f"{where}: {key} must be an integer, got {value!r}")
    return value


MAX_LAYERS, MAX_SIZE = 4096, 1 << 24  # far past any released model; beyond them per-layer tables exhaust memory


def _validate(arch: Arch, where: str) -> None:
    llm, vis = arch.llm, arch.vision
    problems = []
    if max(llm.layers, vis.layers) > MAX_LAYERS:
        problems.append(f"at most {MAX_LAYERS} layers per tower")
    sizes = (llm.hidden, llm.intermediate, llm.heads, llm.kv_heads, llm.vocab, vis.hidden, vis.intermediate,
             vis.heads, vis.image_size, vis.patch_size, arch.projector_hidden)
    if max(sizes) > MAX_SIZE:
        problems.append(f"widths, heads, vocab and image sizes must be at most {MAX_SIZE}")
    if min(llm.layers, llm.hidden, llm.intermediate, llm.heads, llm.kv_heads, llm.vocab) < 1:
        problems.append("llm sizes must be positive")
    elif llm.hidden % llm.heads or llm.heads % llm.kv_heads:
        problems.append(f"llm hidden {llm.hidden} / heads {llm.heads} / kv_heads {llm.kv_heads} "
                        "must divide evenly")
    if min(vis.layers, vis.hidden, vis.intermediate, vis.heads, vis.patch_size) < 1:
        problems.append("vision sizes must be positive")
    elif vis.hidden % vis.heads or vis.image_size % vis.patch_size:
        problems.append("vision hidden % heads and image_size % patch_size must be 0")
    elif not 0 <= vis.feature_layer_index < vis.layers:
        problems.append(f"vision feature_layer {vis.feature_layer} is outside 1..{vis.layers} "
                        f"or -{vis.layers}..-1")
    if arch.projector_hidden != llm.hidden:
        problems.append(f"projector hidden {arch.projector_hidden} != llm hidden {llm.hidden}")
    if problems:
        raise UsageError(f"{where}: " + "; ".join(problems))
