"""Resident memory of a LLaVA model: weights as loaded, KV cache, prefill activation peak. Pure functions.

Units: bytes (ints). "Resident" means what sits in memory while the model runs, unlike the paper's
"Total Memory" (LLM-Viewer's bytes moved during a prefill, `ficoco_edge.cost.llmviewer_cost`).

Quantization here is weight-only, as bitsandbytes and the exported ONNX engines run it: the
linear layers' weights take `weight_bits` plus their scales; embeddings, the LM head, norms,
biases, the patch-embedding conv and position tables stay 16-bit (bitsandbytes keeps `lm_head`
in 16 bits); activations and the KV cache stay 16-bit unless `kv_bits` says otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from ficoco_edge.arch import Arch
from ficoco_edge.cost import kv_bytes
from ficoco_edge.errors import UsageError

WEIGHT_BITS = {"fp32": 32, "fp16": 16, "int8": 8, "int4": 4}  # fp32: the CPU exports
INT8_ROW_SCALE_BYTES = 4
"""LLM.int8 / per-channel int8: one fp32 scale per output row."""
INT4_BLOCK = 64
INT4_SCALE_BITS = 8
INT4_SECOND_LEVEL = 256
"""4-bit as bitsandbytes NF4 with double quantization stores it: an 8-bit absmax per block of 64
weights and an fp32 scale per 256 such blocks, 0.127 bit/weight. (onnxruntime's MatMulNBits at
block 32 with fp32 scales adds 1 bit/weight instead: +0.8 GB on LLaVA-1.5-7B.)"""


@dataclass(frozen=True)
class ParamCounts:
    """Parameters of a LLaVA model as transformers builds it (every vision layer is resident,
    also those after LLaVA's feature layer).

    linear: elements of the weight matrices a quantizer converts (LLM q/k/v/o/gate/up/down,
        CLIP q/k/v/out/fc1/fc2, the projector's two linears); linear_rows: their output rows.
    llm_linear: the LLM's share of `linear` (what a decode step reads).
    lm_head: h*V; other: everything else (embedding tables, norms, biases, the patch conv).
    """

    linear: int
    linear_rows: int
    llm_linear: int
    lm_head: int
    other: int

    @property
    def total(self) -> int:
        return self.linear + self.lm_head + self.other


def param_counts(arch: Arch) -> ParamCounts:
    """Count the parameters of `random_llava(arch)` by group (see ParamCounts)."""
    t, v, hp = arch.llm, arch.vision, arch.projector_hidden
    h, kvw, i = t.hidden, t.kv_width, t.intermediate
    llm_linear = t.layers * (2 * h * h + 2 * h * kvw + 3 * h * i)
    llm_rows = t.layers * (2 * h + 2 * kvw + 2 * i + h)
    hv, iv = v.hidden, v.intermediate
    vis_linear = v.layers * (4 * hv * hv + 2 * hv * iv)
    vis_rows = v.layers * (4 * hv + iv + hv)
    proj_linear, proj_rows = hv * hp + hp * hp, 2 * hp
    llm_other = t.vocab * h + t.layers * 2 * h + h
    vis_other = (3 * v.patch_size**2 * hv + hv + (v.num_patches + 1) * hv + 2 * hv   # embeddings, pre-norm
                 + v.layers * (4 * hv + iv + hv + 4 * hv) + 2 * hv)                # biases, norms; post-norm
    return ParamCounts(llm_linear + vis_linear + proj_linear, llm_rows + vis_rows + proj_rows, llm_linear,
                       h * t.vocab, llm_other + vis_other + 2 * hp)


def weight_bits(quant: str) -> int:
    """fp32 / fp16 / int8 / int4 -> 32 / 16 / 8 / 4."""
    if quant not in WEIGHT_BITS:
        raise UsageError(f"unknown quantization {quant!r}; valid: {', '.join(WEIGHT_BITS)}")
    return WEIGHT_BITS[quant]


def linear_weight_bytes(n_weights: int, n_rows: int, quant: str) -> int:
    """Bytes of `n_weights` linear weights in `n_rows` output rows at `quant`, scales included."""
    bits = weight_bits(quant)
    if bits >= 16:
        return bits // 8 * n_weights
    if bits == 8:
        return n_weights + INT8_ROW_SCALE_BYTES * n_rows
    blocks = math.ceil(n_weights / INT4_BLOCK)
    return n_weights // 2 + blocks * INT4_SCALE_BITS // 8 + 4 * math.ceil(blocks / INT4_SECOND_LEVEL)


def resident_weight_bytes(arch: Arch, quant: str) -> int:
    """Bytes of all weights as loaded: quantized linears + 16-bit everything else."""
    p = param_counts(arch)
    return linear_weight_bytes(p.linear, p.linear_rows, quant) + 2 * (p.lm_head + p.other)


def decode_weight_bytes(arch: Arch, quant: str) -> int:
    """Bytes one decode step reads at least: the LLM's linears (with scales) and the 16-bit LM head."""
    t = arch.llm
    p = param_counts(arch)
    rows = t.layers * (2 * t.hidden + 2 * t.kv_width + 2 * t.intermediate + t.hidden)
    return linear_weight_bytes(p.llm_linear, rows, quant) + 2 * p.lm_head


def kv_cache_bytes(arch: Arch, llm_tokens_per_layer: Sequence[int], batch: int = 1, kv_bits: int = 16) -> int:
    """KV-cache bytes for `batch` sequences whose layer l caches llm_tokens_per_layer[l] tokens
    (grouped-query width, each layer's buffer rounded up to whole bytes)."""
    return batch * kv_bytes(arch.llm, llm_tokens_per_layer, kv_bits / 8)


def activation_peak_bytes(arch: Arch, llm_tokens_per_layer: Sequence[int], batch: int = 1,
                          act_bytes: int = 2) -> int:
    """Estimated transient peak of a prefill beyond weights and KV, bytes.

    With S = the largest layer's token count: the input embeddings (S*h) stay alive through the
    forward; inside a decoder layer the larger live set is the MLP's (residual + normed input
    2h, gate/up/product 3I per token) or the attention's (residual, normed, q, attention output 4h,
    k and v 2*kv_width). Plus fp32 logits of the last position (4*V). SDPA keeps no s x s matrix.
    The vision tower's live set (577 tokens x (2*hv + 3*Iv)) is smaller for LLaVA widths but counted.
    """
    t, v = arch.llm, arch.vision
    s = max(llm_tokens_per_layer)
    layer = max(2 * t.hidden + 3 * t.intermediate, 4 * t.hidden + 2 * t.kv_width)
    llm = s * (t.hidden + layer)
    vision = (v.num_patches + 1) * (2 * v.hidden + 3 * v.intermediate)
    return batch * (act_bytes * max(llm, vision) + 4 * t.vocab)
