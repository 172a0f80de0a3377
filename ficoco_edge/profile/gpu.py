"""Models for measured mode: a real-size LLaVA with random weights built on the device, or a
checkpoint, in fp16 or with bitsandbytes int8 (LLM.int8) / 4-bit (NF4) linear layers.

torch, transformers and bitsandbytes are imported inside the functions.
"""

from __future__ import annotations

from contextlib import contextmanager

from ficoco_edge.arch import Arch
from ficoco_edge.errors import UsageError

SKIP_MODULES = ("lm_head",)
"""Linear layers left in fp16, as transformers' BitsAndBytesConfig leaves the output embedding."""
INT8_THRESHOLD = 6.0
"""LLM.int8 outlier threshold (transformers' default `llm_int8_threshold`)."""
NF4_BLOCKSIZE = 64


def require_cuda(device: str) -> None:
    """UsageError unless torch sees a CUDA GPU for `device` ('cuda', 'cuda:1', ...)."""
    import torch

    if not device.startswith("cuda"):
        raise UsageError(f"measured mode runs on a CUDA GPU; got --gpu {device!r} (use cuda or cuda:N)")
    if not torch.cuda.is_available():
        raise UsageError("measured mode needs a CUDA GPU and torch sees none here; "
                         "use --mode physical or --mode llmviewer for predictions, or run this on a GPU machine")


def require_bitsandbytes():
    """The bitsandbytes module, or a UsageError saying how to install it."""
    try:
        import bitsandbytes
    except ImportError:
        raise UsageError("--quant int8/int4 in measured mode needs bitsandbytes: "
                         "pip install 'ficoco-edge[gpu]' (or bitsandbytes>=0.45), or measure fp16 only") from None
    return bitsandbytes


@contextmanager
def _default_dtype(dtype):
    """Build modules in `dtype` (restores torch's default afterwards)."""
    import torch

    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def build_random(arch: Arch, device: str, seed: int = 0):
    """A LlavaForConditionalGeneration with `arch`'s sizes, seeded random fp16 weights created on
    `device` directly (a 13B model never exists in fp32 or on the host). Eval mode, SDPA."""
    import torch
    from transformers import LlavaForConditionalGeneration

    from ficoco_edge.models.build import llava_config

    torch.manual_seed(seed)
    with _default_dtype(torch.float16), torch.device(device):
        model = LlavaForConditionalGeneration(llava_config(arch))
    return model.to(device=device, dtype=torch.float16).eval()


def load_checkpoint(path: str, device: str):
    """A llava-hf checkpoint directory (or hub id in the local cache) in fp16 on `device`."""
    import torch
    from transformers import LlavaForConditionalGeneration

    try:
        model = LlavaForConditionalGeneration.from_pretrained(path, dtype=torch.float16, device_map={"": device})
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot load checkpoint {path!r}: {exc}") from exc
    return model.eval()


def arch_of(model, name: str) -> Arch:
    """The Arch of a loaded LLaVA (for a checkpoint, whose sizes come from its config)."""
    from ficoco_edge.models.llava import llm_arch, vision_arch

    config = model.config
    return Arch(name, llm_arch(config), vision_arch(config), config.text_config.hidden_size, f"checkpoint {name}")


def quantize(model, quant: str) -> int:
    """Replace every nn.Linear except SKIP_MODULES with a bitsandbytes layer, in place, on the GPU.

    quant: 'int8' -> Linear8bitLt (LLM.int8, threshold 6.0, int8 weights + per-row scales);
    'int4' -> Linear4bit (NF4, block 64, double-quantized scales, fp16 compute); 'fp16' -> no-op.
    Returns the number of layers replaced.
    """
    if quant == "fp16":
        return 0
    import torch
    from torch import nn

    bnb = require_bitsandbytes()
    targets = [(name, module) for name, module in model.named_modules()
               if isinstance(module, nn.Linear) and name.rsplit(".", 1)[-1] not in SKIP_MODULES]
    while targets:  # pop, so each fp16 weight is freed once its replacement exists
        name, linear = targets.pop()
        parent = model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model
        setattr(parent, name.rsplit(".", 1)[-1], _bnb_linear(bnb, linear, quant))
        del linear
    torch.cuda.empty_cache()
    return len([m for m in model.modules() if isinstance(m, (bnb.nn.Linear8bitLt, bnb.nn.Linear4bit))])


def _bnb_linear(bnb, linear, quant: str):
    """One nn.Linear (fp16 weight on the GPU) -> its bitsandbytes replacement, quantized now."""
    import torch

    weight = linear.weight.data
    has_bias = linear.bias is not None
    with torch.device("meta"):
        if quant == "int8":
            new = bnb.nn.Linear8bitLt(linear.in_features, linear.out_features, bias=has_bias,
                                      has_fp16_weights=False, threshold=INT8_THRESHOLD)
        else:
            new = bnb.nn.Linear4bit(linear.in_features, linear.out_features, bias=has_bias,
                                    compute_dtype=torch.float16, quant_type="nf4")
    if quant == "int8":
        param = bnb.nn.Int8Params(weight, requires_grad=False, has_fp16_weights=False)
    else:
        param = bnb.nn.Params4bit(weight, requires_grad=False, quant_type="nf4", blocksize=NF4_BLOCKSIZE,
                                  compress_statistics=True, module=new)
    new.weight = param._quantize(weight.device)
    if has_bias:
        new.bias = torch.nn.Parameter(linear.bias.data, requires_grad=False)
    return new


def environment(device: str) -> dict:
    """Versions and the GPU, for the report."""
    import torch
    import transformers

    info = {"torch": torch.__version__, "transformers": transformers.__version__,
            "cuda": torch.version.cuda, "gpu": torch.cuda.get_device_name(device)}
    try:
        import bitsandbytes

        info["bitsandbytes"] = bitsandbytes.__version__
    except ImportError:
        info["bitsandbytes"] = None
    return info
