"""Greedy decoding over exported graphs with numpy + onnxruntime: the reference driver that export
validation uses (fp32 vs quantized agreement) and tests compare with transformers' generate.

Each layer's cache is its own buffer of S_l + steps slots, filled in place at past_lengths[l].
Feeds are cast to each graph's declared input types, as the runtime does (fp16 graphs take fp16).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


ORT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(int64)": np.int64}


def run(session, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """session.run on the feeds it declares, each cast to its declared type."""
    types = {i.name: ORT_TYPES[i.type] for i in session.get_inputs()}
    return session.run(None, {k: np.asarray(v).astype(types[k], copy=False) for k, v in feeds.items() if k in types})


@dataclass
class Graphs:
    vision: object  # onnxruntime.InferenceSession
    prefill: object
    decode: object

    def inputs(self, name: str) -> set[str]:
        return {i.name for i in getattr(self, name).get_inputs()}


def prompt_embeds(graphs: Graphs, table: np.ndarray, ids: np.ndarray, image_token_id: int,
                  pixel_values: np.ndarray) -> tuple[np.ndarray, int]:
    """ids (s,) with one span of image tokens -> inputs_embeds (1, s, H), image span start."""
    image = run(graphs.vision, {"pixel_values": pixel_values})[0]
    start = int(np.argmax(ids == image_token_id))
    parts = [table[ids[:start]][None], image, table[ids[start + image.shape[1]:]][None]]
    return np.concatenate(parts, 1).astype(np.float32), start


def greedy(graphs: Graphs, table: np.ndarray, embeds: np.ndarray, image_start: int, steps: int,
           forced: list[int] | None = None) -> tuple[list[int], list[int]]:
    """Up to `steps` greedy tokens; with `forced`, feed those tokens instead (teacher forcing) and
    still return this model's argmax at every step. Returns (tokens, per-layer prefill cache lengths)."""
    logits, *caches = run(graphs.prefill, {"inputs_embeds": embeds, "image_start": np.array(image_start, dtype=np.int64)})
    prefill_lengths = [c.shape[2] for c in caches[::2]]
    lengths = np.array(prefill_lengths, dtype=np.int64)
    buffers = [np.concatenate([c, np.zeros((*c.shape[:2], steps, c.shape[3]), c.dtype)], 2) for c in caches]
    tokens, position = [int(logits.argmax())], embeds.shape[1]
    for step in range(steps - 1):
        fed = forced[step] if forced is not None else tokens[-1]
        past = {f"past_{kind}_{i // 2}": buf for i, (kind, buf) in enumerate(zip(("key", "value") * len(lengths), buffers))}
        logits, *new = run(graphs.decode, {"inputs_embeds": table[[fed]][None], "position": np.array([[position]]),
                                           "past_lengths": lengths, **past})
        for i, buf in enumerate(buffers):
            buf[:, :, lengths[i // 2]] = new[i][:, :, 0]
        lengths, position = lengths + 1, position + 1
        tokens.append(int(logits.argmax()))
    return tokens, prefill_lengths


def agreement(reference: Graphs, candidate: Graphs, table: np.ndarray, embeds: np.ndarray, image_start: int,
              steps: int, stop_ids: tuple[int, ...] = ()) -> tuple[int, int]:
    """(matches, predictions): next-token predictions where `candidate` matches `reference`, both
    fed the reference's greedy tokens, up to and including the reference's first stop token."""
    want, _ = greedy(reference, table, embeds, image_start, steps)
    ends = [i for i, t in enumerate(want) if t in stop_ids]
    want = want[: ends[0] + 1] if ends else want
    got, _ = greedy(candidate, table, embeds, image_start, len(want), forced=want)
    return sum(a == b for a, b in zip(want, got)), len(want)
