"""Device predictions: roofline ceilings for TTFT and decode, and whether the model fits. Pure functions.

A ceiling is the best a device could do: time = max(ops / peak ops, bytes / peak bandwidth), with
every weight read once and the KV cache written (prefill) or read (decode) once. Real runtimes are
slower (docs/profile.md compares with the H100 measurements). Units: seconds, bytes, ops.

Compute precision: int8 runs W8A8 on the int8 tensor peak; fp16 and int4 (W4A16: weights
dequantized to fp16 in the matrix kernels) run on the fp16 peak.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from ficoco_edge.arch import Arch
from ficoco_edge.cost import QuantBits, physical_cost
from ficoco_edge.errors import UsageError
from ficoco_edge.profile.devices import DeviceProfile
from ficoco_edge.profile.footprint import (activation_peak_bytes, decode_weight_bytes, kv_cache_bytes,
                                           param_counts, resident_weight_bytes, weight_bits)
from ficoco_edge.reduction.schedule import Schedule

MAX_CONTEXT = 1 << 22
"""Upper end of the largest-context search (tokens)."""


@dataclass(frozen=True)
class Workload:
    """What runs: a schedule on an architecture at a quantization, batch and context.

    text_tokens: text tokens of the prompt (prefilled with the visual tokens).
    context: text tokens each sequence's KV cache holds at the end (prompt + answer), >= text_tokens.
    kv_bits: bits per KV element (16 unless the runtime quantizes its cache).
    """

    arch: Arch
    schedule: Schedule
    quant: str
    batch: int = 1
    text_tokens: int = 60
    context: int = 60
    kv_bits: int = 16

    def __post_init__(self) -> None:
        weight_bits(self.quant)
        if self.batch < 1:
            raise UsageError(f"--batch must be >= 1, got {self.batch}")
        if self.text_tokens < 1 or self.context < self.text_tokens:
            raise UsageError(f"--context ({self.context}) must be >= the prompt's text tokens ({self.text_tokens})")
        if self.kv_bits not in (4, 8, 16):
            raise UsageError(f"KV bits must be 16, 8 or 4, got {self.kv_bits}")

    def llm_tokens(self, text: int) -> list[int]:
        """Tokens layer l holds with `text` text tokens after the visual ones."""
        return self.schedule.llm_tokens_per_layer(self.arch.llm.layers, text)

    def with_(self, **changes) -> "Workload":
        return replace(self, **changes)


@dataclass(frozen=True)
class Footprint:
    """Resident bytes at the workload's batch and final context."""

    weights: int
    kv: int
    activations: int

    @property
    def total(self) -> int:
        return self.weights + self.kv + self.activations


@dataclass(frozen=True)
class Prediction:
    """A device's ceilings and memory verdict for a workload (JSON-ready with `as_dict`)."""

    device: str
    ttft_s: float
    ttft_bound: str
    decode_step_s: float
    decode_tokens_per_s: float
    decode_bound: str
    footprint: Footprint
    usable_bytes: int
    fits: bool
    largest_batch: int
    largest_context: int

    def as_dict(self) -> dict:
        data = asdict(self)
        data["footprint"]["total"] = self.footprint.total
        return data


def compute_precision(quant: str) -> str:
    """'int8' for W8A8, else 'fp16' (fp16 weights, or int4 weights dequantized to fp16)."""
    return "int8" if quant == "int8" else "fp16"


def footprint(work: Workload) -> Footprint:
    """Weights + KV at the final context + the prefill's activation peak, for work.batch sequences."""
    kv = kv_cache_bytes(work.arch, work.llm_tokens(work.context), work.batch, work.kv_bits)
    act = activation_peak_bytes(work.arch, work.llm_tokens(work.text_tokens), work.batch)
    return Footprint(resident_weight_bytes(work.arch, work.quant), kv, act)


def prefill_ceiling(work: Workload, device: DeviceProfile) -> tuple[float, str]:
    """(seconds, 'compute' | 'memory') of the prefill of work.batch prompts: vision tower, projector,
    LLM (causal, grouped-query; `cost.physical_cost`), weights read once, the prompt's KV written."""
    arch, s = work.arch, work.schedule
    tokens = work.llm_tokens(work.text_tokens)
    bits = QuantBits(weight_bits(work.quant), 16, work.kv_bits)
    cost = physical_cost(arch, s.vision_tokens_per_layer(arch.vision), tokens, bits)
    ops = cost.total_tflops * 1e12 * work.batch
    moved = resident_weight_bytes(arch, work.quant) + kv_cache_bytes(arch, tokens, work.batch, work.kv_bits)
    return _roofline(ops, moved, device, compute_precision(work.quant))


def decode_ceiling(work: Workload, device: DeviceProfile) -> tuple[float, str]:
    """(seconds per step, bound) of one decode step of work.batch sequences at the final context:
    LLM linears and LM head read once, every sequence's KV read once; ops 2 per weight per
    sequence plus attention 4*h per cached token per layer."""
    arch, llm = work.arch, work.arch.llm
    tokens = work.llm_tokens(work.context)
    p = param_counts(arch)
    ops = work.batch * (2 * (p.llm_linear + p.lm_head) + 4 * llm.hidden * sum(tokens))
    moved = decode_weight_bytes(arch, work.quant) + kv_cache_bytes(arch, tokens, work.batch, work.kv_bits)
    return _roofline(ops, moved, device, compute_precision(work.quant))


def _roofline(ops: float, moved: float, device: DeviceProfile, precision: str) -> tuple[float, str]:
    compute_s, memory_s = ops / device.peak_ops(precision), moved / device.bandwidth_bytes
    return (compute_s, "compute") if compute_s >= memory_s else (memory_s, "memory")


def fits(work: Workload, usable_bytes: int) -> bool:
    """Whether weights + KV + activations of `work` fit in `usable_bytes`."""
    return footprint(work).total <= usable_bytes


def largest_batch(work: Workload, usable_bytes: int) -> int:
    """Largest batch whose footprint fits (0 if not even one sequence does). Bytes grow linearly in batch."""
    one = footprint(work.with_(batch=1))
    per_sequence = one.kv + one.activations
    room = usable_bytes - one.weights
    return max(0, room // per_sequence) if per_sequence else 0


def largest_context(work: Workload, usable_bytes: int) -> int:
    """Largest context (text tokens per sequence) that fits at work.batch; 0 if the prompt does not."""
    if not fits(work.with_(context=work.text_tokens), usable_bytes):
        return 0
    lo, hi = work.text_tokens, MAX_CONTEXT
    if fits(work.with_(context=hi), usable_bytes):
        return hi
    while lo < hi:  # invariant: fits(lo) and not fits(hi + 1)
        mid = (lo + hi + 1) // 2
        if fits(work.with_(context=mid), usable_bytes):
            lo = mid
        else:
            hi = mid - 1
    return lo


def predict(work: Workload, device: DeviceProfile, usable_bytes: int | None = None) -> Prediction:
    """Ceilings and memory verdict of `work` on `device` (usable_bytes: override, e.g. from jtop)."""
    usable = device.usable_bytes if usable_bytes is None else usable_bytes
    ttft, ttft_bound = prefill_ceiling(work, device)
    step, step_bound = decode_ceiling(work, device)
    return Prediction(device.key, ttft, ttft_bound, step, work.batch / step, step_bound, footprint(work), usable,
                      fits(work, usable), largest_batch(work, usable), largest_context(work, usable))
