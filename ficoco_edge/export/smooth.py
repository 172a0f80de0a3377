"""Outlier smoothing of the LLM's MLP down projections for the int8 export, from calibration prompts.

A few input channels of a Llama-family down projection carry activations tens of times larger than
the rest (on the embedded model, per-channel peaks reach 12-90x their median), so one int8 scale per
token spends its levels on them. Per channel c, with a_c the largest |input| seen on calibration
prompts and w_c the largest |weight| in row c of the down projection:

    s_c = a_c ** alpha / w_c ** (1 - alpha)
    up_proj output channel c  /= s_c      (so the down projection's input channel c shrinks by s_c)
    down_proj input row c     *= s_c      (and its weight grows by the same factor)

The product is unchanged in exact arithmetic (SiLU(gate) * up is linear in up); the activations'
outliers move into the weights, which are quantized per output column. The weights are smoothed
in place for the duration of an export and restored afterwards.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch

from ficoco_edge.models.llava import find_parts

ALPHA = 0.8  # 0.5 kept 97.0% of 200 easy-VQA answers on the embedded model, 0.8 97.5% (docs/export.md)
CALIBRATION_PROMPTS = 16


def down_input_peaks(vlm, samples) -> list[torch.Tensor]:
    """Per layer, the largest |input| of each down-projection input channel over `samples`
    (objects with .image, a path, and .question), each prompt run through the model once (its
    prefill): (intermediate,)."""
    from ficoco_edge.runtime.images import open_image

    mlps = [layer.mlp for layer in find_parts(vlm.model).llm.layers]
    peaks = [torch.zeros(m.down_proj.in_features) for m in mlps]

    def recorder(index: int):
        def record(module, args):
            flat = args[0].detach().float().abs().reshape(-1, args[0].shape[-1])
            peaks[index] = torch.maximum(peaks[index], flat.amax(0).cpu())
        return record

    hooks = [m.down_proj.register_forward_pre_hook(recorder(i)) for i, m in enumerate(mlps)]
    try:
        with torch.no_grad():
            for sample in samples:
                ids, mask = vlm.prompt_batch([sample.question])
                vlm.model(input_ids=ids, attention_mask=mask, pixel_values=vlm.pixels([open_image(sample.image)]))
    finally:
        for hook in hooks:
            hook.remove()
    return peaks


def smoothing_factors(peaks: torch.Tensor, down_weight: torch.Tensor, alpha: float = ALPHA) -> torch.Tensor:
    """s (intermediate,) from input peaks (intermediate,) and the down weight (hidden, intermediate)."""
    weight_peaks = down_weight.detach().float().abs().amax(0)
    return peaks.clamp(min=1e-5) ** alpha / weight_peaks.clamp(min=1e-5) ** (1 - alpha)


@contextmanager
def smoothed_mlps(vlm, peaks: list[torch.Tensor], alpha: float = ALPHA) -> Iterator[None]:
    """Inside: every layer's up_proj / down_proj weights smoothed by smoothing_factors; after: the
    original tensors back, bit for bit."""
    mlps = [layer.mlp for layer in find_parts(vlm.model).llm.layers]
    originals = [(m.up_proj.weight.data, m.down_proj.weight.data) for m in mlps]
    try:
        with torch.no_grad():
            for m, layer_peaks in zip(mlps, peaks, strict=True):
                s = smoothing_factors(layer_peaks, m.down_proj.weight, alpha).to(m.down_proj.weight.dtype)
                m.up_proj.weight.data = m.up_proj.weight.data / s[:, None]  # (intermediate, hidden): rows
                m.down_proj.weight.data = m.down_proj.weight.data * s[None, :]  # (hidden, intermediate)
        yield
    finally:
        for m, (up, down) in zip(mlps, originals):
            m.up_proj.weight.data, m.down_proj.weight.data = up, down
