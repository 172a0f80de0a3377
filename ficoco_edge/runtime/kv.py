"""Per-layer KV cache sized from the export: layer l owns buffers of S_l + max_new_tokens slots.

A reduced model caches different token counts per layer (FiCoCo-L keeps every visual token in
the first K layers and fewer after), so one common maximum would waste memory in every later
layer. Buffers are allocated once, before the prefill, and filled in place: the prefill's caches
are copied into the first S_l slots and each decode step writes one slot at past_lengths[l].
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np


def kv_bytes_needed(prefill_lengths: list[int], extra: int, kv_heads: int, head_dim: int, itemsize: int) -> int:
    """Bytes of key + value buffers for layers caching prefill_lengths[l] + extra tokens each."""
    return sum(2 * (s + extra) * kv_heads * head_dim * itemsize for s in prefill_lengths)


def assign_slots(dst, at: int, src) -> None:
    """dst (1, kvh, C, d)[:, :, at:at + n] = src (1, kvh, n, d) for numpy arrays and torch tensors."""
    dst[:, :, at:at + src.shape[2]] = src


@dataclass
class KVCache:
    """keys[l], values[l]: (1, kv_heads, S_l + extra, head_dim) arrays (numpy, or torch on the
    PyTorch backend, device buffers on TensorRT); lengths (L,) int64: filled slots per layer;
    write_slots(dst, at, src): the backend's way of writing src into slots at.. of dst."""

    keys: list
    values: list
    lengths: np.ndarray
    write_slots: Callable = field(default=assign_slots, repr=False)

    @classmethod
    def allocate(cls, prefill_lengths: list[int], extra: int, kv_heads: int, head_dim: int, dtype,
                 zeros: Callable = np.zeros, write_slots: Callable = assign_slots) -> "KVCache":
        """Empty buffers; zeros(shape, dtype) makes one (the backend's allocator)."""
        def buffer(s: int):
            return zeros((1, kv_heads, s + extra, head_dim), dtype)

        return cls([buffer(s) for s in prefill_lengths], [buffer(s) for s in prefill_lengths],
                   np.zeros(len(prefill_lengths), dtype=np.int64), write_slots)

    @property
    def nbytes(self) -> int:
        return sum(int(b.nbytes) for b in (*self.keys, *self.values))

    @property
    def capacity(self) -> list[int]:
        return [int(k.shape[2]) for k in self.keys]

    def fill(self, caches: list) -> None:
        """Copy a prefill's caches [key_0, value_0, key_1, ...], each (1, kvh, S_l, d), into slot 0.."""
        for layer, (key, value) in enumerate(zip(caches[::2], caches[1::2])):
            s = key.shape[2]
            if s > self.keys[layer].shape[2]:
                raise ValueError(f"layer {layer}: prefill cached {s} tokens, buffer holds {self.keys[layer].shape[2]}")
            self.write_slots(self.keys[layer], 0, key)
            self.write_slots(self.values[layer], 0, value)
            self.lengths[layer] = s

    def append(self, new: list) -> None:
        """Write one decode step's [key_0, value_0, ...], each (1, kvh, 1, d), at lengths[l]."""
        if (self.lengths >= self.capacity).any():
            raise ValueError("the KV cache is full: allocate it with more max_new_tokens")
        for layer, (key, value) in enumerate(zip(new[::2], new[1::2])):
            at = int(self.lengths[layer])
            self.write_slots(self.keys[layer], at, key)
            self.write_slots(self.values[layer], at, value)
        self.lengths += 1

    def feeds(self) -> dict:
        """The decode graph's past_key_l / past_value_l inputs (whole buffers; past_lengths masks)."""
        named = {}
        for layer, (key, value) in enumerate(zip(self.keys, self.values)):
            named[f"past_key_{layer}"], named[f"past_value_{layer}"] = key, value
        return named
