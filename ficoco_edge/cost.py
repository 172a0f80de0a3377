"""Prefill cost formulas: the paper's LLM-Viewer count and a physical count. Pure functions.

Units are decimal: TFLOPs = 1e12 ops, GB = 1e9 bytes, MB = 1e6 bytes. "ops" counts a
multiply-add as 2. Token lists are per LLM (or vision) layer, batch 1.

LLM-Viewer mode (design.md, "Budgets and the cost model"), L layers, hidden h, MLP width I,
n_h heads, vocab V, s tokens, multi-head attention, full (non-causal) s x s attention:

    OPs(s)    = L*[2s(4h^2+3hI) + 4h*s^2 + 5*n_h*s^2 + 18h*s] + h*V
    KV(s)     = 2*L*h*s*kv/8                                               bytes
    Access(s) = w/8*[L(4h^2+3hI) + hV] + a/8*L*[s(22h+3I) + 4*n_h*s^2] + kv/8*4*L*h*s  bytes

With a per-layer token list the bracketed per-layer terms use that layer's count; the h*V term
and the weight bytes are counted once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from ficoco_edge.arch import Arch, LLMArch, VisionArch
from ficoco_edge.errors import UsageError

QUANTS = ("fp16", "int8", "int4")


@dataclass(frozen=True)
class QuantBits:
    """Bits per weight, per activation and per KV-cache element."""

    weight: int
    activation: int
    kv: int


@dataclass(frozen=True)
class Cost:
    """LLM-Viewer-style prefill cost: TFLOPs, bytes moved (GB, the paper's "Total Memory"),
    KV cache size (MB)."""

    tflops: float
    memory_access_gb: float
    kv_cache_mb: float


@dataclass(frozen=True)
class PhysicalCost:
    """Physical prefill cost of a LLaVA model (see `physical_cost`). Byte counts are exact ints."""

    llm_tflops: float
    vision_tflops: float
    projector_tflops: float
    total_tflops: float
    weight_bytes: int
    kv_bytes: int

    @property
    def weight_gb(self) -> float:
        return self.weight_bytes / 1e9

    @property
    def kv_mb(self) -> float:
        return self.kv_bytes / 1e6


def quant_bits(quant: str | QuantBits) -> QuantBits:
    """`fp16`/`int8`/`int4` -> W16A16KV16 / W8A8KV8 / W4A4KV4.

    Activations follow the weights: that is the convention that reproduces the paper's INT8
    "Total Memory" of 11.10 GB (W8A16 would give 15.27 GB). Pass a `QuantBits` for others.
    """
    if isinstance(quant, QuantBits):
        return quant
    bits = {"fp16": 16, "int8": 8, "int4": 4}.get(quant)
    if bits is None:
        raise UsageError(f"unknown quantization {quant!r}; valid: {', '.join(QUANTS)}")
    return QuantBits(bits, bits, bits)


# ---------------------------------------------------------------- LLM-Viewer mode


def llmviewer_layer_ops(llm: LLMArch, s: int) -> int:
    """Ops of one decoder layer over s tokens: 2s(4h^2+3hI) + 4h*s^2 + 5*n_h*s^2 + 18h*s."""
    h, i = llm.hidden, llm.intermediate
    return 2 * s * (4 * h * h + 3 * h * i) + 4 * h * s * s + 5 * llm.heads * s * s + 18 * h * s


def llmviewer_ops(llm: LLMArch, s: int) -> int:
    """OPs(s) of a prefill of s tokens through every layer, closed form (design.md)."""
    h, i, n_layers = llm.hidden, llm.intermediate, llm.layers
    per_layer = 2 * s * (4 * h * h + 3 * h * i) + 4 * h * s**2 + 5 * llm.heads * s**2 + 18 * h * s
    return n_layers * per_layer + h * llm.vocab


def llmviewer_kv_bytes(llm: LLMArch, s: int, kv_bits: int = 16) -> float:
    """KV(s) = 2*L*h*s*kv_bits/8 bytes (multi-head: kv_heads ignored, as LLM-Viewer counts)."""
    return 2 * llm.layers * llm.hidden * s * kv_bits / 8


def llmviewer_access_bytes(llm: LLMArch, s: int, quant: str | QuantBits = "fp16") -> float:
    """Access(s), bytes moved by a prefill of s tokens through every layer (closed form)."""
    b = quant_bits(quant)
    h, i, nh, n_layers = llm.hidden, llm.intermediate, llm.heads, llm.layers
    return (b.weight / 8 * (n_layers * (4 * h * h + 3 * h * i) + h * llm.vocab)
            + b.activation / 8 * n_layers * (s * (22 * h + 3 * i) + 4 * nh * s * s)
            + b.kv / 8 * 4 * n_layers * h * s)


def llmviewer_cost(llm: LLMArch, tokens_per_layer: Sequence[int],
                   quant: str | QuantBits = "fp16") -> Cost:
    """LLM-Viewer cost of a prefill where layer l sees tokens_per_layer[l] tokens.

    tokens_per_layer: length llm.layers. Ops do not depend on `quant` (the paper's INT8/INT4
    TFLOPs of fp16/2 and fp16/4 are a labelling convention, not a count).
    """
    _check_tokens(tokens_per_layer, llm.layers, "LLM")
    bits = quant_bits(quant)
    ops = sum(llmviewer_layer_ops(llm, s) for s in tokens_per_layer) + llm.hidden * llm.vocab
    kv = 2 * llm.hidden * sum(tokens_per_layer) * bits.kv / 8
    access = _access_bytes(llm, tokens_per_layer, bits)
    return Cost(ops / 1e12, access / 1e9, kv / 1e6)


def _access_bytes(llm: LLMArch, tokens: Sequence[int], bits: QuantBits) -> float:
    h, i, nh = llm.hidden, llm.intermediate, llm.heads
    weights = llm.layers * (4 * h * h + 3 * h * i) + h * llm.vocab
    acts = sum(s * (22 * h + 3 * i) + 4 * nh * s * s for s in tokens)
    kv = 4 * h * sum(tokens)
    return bits.weight / 8 * weights + bits.activation / 8 * acts + bits.kv / 8 * kv


# ---------------------------------------------------------------- physical mode


def kv_bytes(llm: LLMArch, tokens_per_layer: Sequence[int], bytes_per_element: float,
             use_kv_heads: bool = True) -> int:
    """Exact KV-cache bytes: sum over layers of ceil(2 * S_l * width * bytes_per_element).

    width = kv_heads*head_dim (grouped-query) or hidden (multi-head, use_kv_heads=False).
    tokens_per_layer: S_l, the tokens layer l caches; length llm.layers.
    bytes_per_element: 2 for fp16, 1 for int8, 0.5 for int4 (each layer's buffer rounded up).
    """
    _check_tokens(tokens_per_layer, llm.layers, "LLM")
    width = llm.kv_width if use_kv_heads else llm.hidden
    return sum(math.ceil(2 * s * width * bytes_per_element) for s in tokens_per_layer)


def llm_attention_ops(llm: LLMArch, s: int, causal: bool = True, gqa: bool = True) -> int:
    """Ops of the attention half of a decoder layer over s tokens.

    q, o projections 2*s*h^2 each; k, v projections 2*s*h*kv_width each (kv_width = hidden
    when gqa=False); scores QK^T and AV 2*head_dim ops per (head, query, key) pair each;
    softmax 5 ops per (head, pair); norms, RoPE, residuals 18*h per token (LLM-Viewer's
    allowance). Pairs: s(s+1)/2 when causal, s^2 otherwise.
    """
    h = llm.hidden
    kv_width = llm.kv_width if gqa else h
    pairs = s * (s + 1) // 2 if causal else s * s
    projections = 2 * s * (2 * h * h + 2 * h * kv_width)
    return projections + 4 * h * pairs + 5 * llm.heads * pairs + 18 * h * s


def llm_mlp_ops(llm: LLMArch, s: int) -> int:
    """Ops of the gated MLP (gate, up, down) over s tokens: 2*s*3*h*I."""
    return 6 * s * llm.hidden * llm.intermediate


def vision_attention_ops(vision: VisionArch, n: int) -> int:
    """Ops of the attention half of a CLIP layer over n tokens (patches + [CLS]), non-causal:
    q, k, v, o 2*n*hv^2 each, QK^T + AV 4*hv*n^2, softmax 5*heads*n^2, elementwise 18*hv*n."""
    hv = vision.hidden
    return 8 * n * hv * hv + 4 * hv * n * n + 5 * vision.heads * n * n + 18 * hv * n


def vision_mlp_ops(vision: VisionArch, n: int) -> int:
    """Ops of the CLIP MLP (fc1, fc2) over n tokens: 2*n*2*hv*Iv."""
    return 4 * n * vision.hidden * vision.intermediate


def projector_ops(arch: Arch, n: int) -> int:
    """Ops of the 2-layer projector over n visual tokens: 2*n*(hv*h + h*h)."""
    hv, h = arch.vision.hidden, arch.projector_hidden
    return 2 * n * (hv * h + h * h)


def physical_cost(arch: Arch, vision_tokens_per_layer: Sequence[int],
                  llm_tokens_per_layer: Sequence[int],
                  quant: str | QuantBits = "fp16") -> PhysicalCost:
    """What a prefill of one image + prompt executes, batch 1.

    vision_tokens_per_layer: patch tokens at the input of vision layer l, then the tower's
        output ([CLS] not included; +1 is added here); at least feature_layer_index + 2
        entries (`Schedule.vision_tokens_per_layer` gives vision.layers + 1). Layers
        0..feature_layer_index run; layer l's attention sees entry l, its MLP entry l+1
        (a reduction happens between the two). Also counted: the patch-embedding conv.
    llm_tokens_per_layer: tokens at the input of LLM layer l (= the tokens its KV cache holds);
        length llm.layers. Attention is causal with grouped-query k/v; layer l's MLP sees
        entry l+1 (the last layer's MLP its own entry); the LM head runs on the last position.
    Projector: on the tokens leaving layer feature_layer_index.
    weight_bytes: weight matrices the prefill multiplies by (LLM layers and LM head, the
        vision layers that run with the patch embedding, the projector) at the weight bits;
        embedding lookups, norms and biases are left out. kv_bytes: `kv_bytes` at the KV bits.
    """
    bits = quant_bits(quant)
    vision_ops, projector_tokens = _vision_ops(arch.vision, vision_tokens_per_layer)
    llm_ops = _llm_ops(arch.llm, llm_tokens_per_layer)
    proj_ops = projector_ops(arch, projector_tokens)
    weights = _weight_params(arch) * bits.weight // 8
    kv = kv_bytes(arch.llm, llm_tokens_per_layer, bits.kv / 8)
    return PhysicalCost(llm_ops / 1e12, vision_ops / 1e12, proj_ops / 1e12,
                        (llm_ops + vision_ops + proj_ops) / 1e12, weights, kv)


def _llm_ops(llm: LLMArch, tokens: Sequence[int]) -> int:
    _check_tokens(tokens, llm.layers, "LLM")
    after = list(tokens[1:]) + [tokens[-1]]
    layers = sum(llm_attention_ops(llm, s) + llm_mlp_ops(llm, t) for s, t in zip(tokens, after))
    return layers + 2 * llm.hidden * llm.vocab


def _vision_ops(vision: VisionArch, tokens: Sequence[int]) -> tuple[int, int]:
    """(ops of the tower up to feature_layer_index, patch tokens it outputs)."""
    used = vision.feature_layer_index + 1
    if len(tokens) < used + 1 or any(t < 0 for t in tokens):
        raise UsageError(f"vision token list needs >= {used + 1} non-negative entries "
                         f"(inputs of layers 0..{used - 1} and its output), got {list(tokens)}")
    patch_embed = 2 * tokens[0] * 3 * vision.patch_size**2 * vision.hidden
    layers = sum(vision_attention_ops(vision, tokens[l] + 1) + vision_mlp_ops(vision, tokens[l + 1] + 1)
                 for l in range(used))
    return patch_embed + layers, tokens[used]


def _weight_params(arch: Arch) -> int:
    llm, vis, h = arch.llm, arch.vision, arch.projector_hidden
    llm_params = llm.layers * (2 * llm.hidden**2 + 2 * llm.hidden * llm.kv_width
                               + 3 * llm.hidden * llm.intermediate) + llm.hidden * llm.vocab
    vis_layer = 4 * vis.hidden**2 + 2 * vis.hidden * vis.intermediate
    vis_params = 3 * vis.patch_size**2 * vis.hidden + (vis.feature_layer_index + 1) * vis_layer
    return llm_params + vis_params + vis.hidden * h + h * h


def _check_tokens(tokens: Sequence[int], n_layers: int, what: str) -> None:
    if len(tokens) != n_layers or any(int(t) != t or t < 0 for t in tokens):
        raise UsageError(f"{what} token list must have {n_layers} non-negative integers, "
                         f"got {len(tokens)}: {list(tokens)[:8]}...")


def llm_matmul_flops(llm: LLMArch, tokens: Sequence[int]) -> int:
    """Matrix-multiply FLOPs of an LLM prefill as an exported static graph runs it (batch 1):
    grouped-query projections, full (masked, not skipped) s x s score and value products, layer
    l's MLP on entry l+1's tokens, the LM head on the last position. No softmax/elementwise ops."""
    _check_tokens(tokens, llm.layers, "LLM")
    h, after = llm.hidden, list(tokens[1:]) + [tokens[-1]]
    layers = sum(2 * s * (2 * h * h + 2 * h * llm.kv_width) + 4 * h * s * s + llm_mlp_ops(llm, t)
                 for s, t in zip(tokens, after))
    return layers + 2 * h * llm.vocab
