"""easy-VQA as tensors for training: pre-processed pixels, prompts with answers, [CLS] labels."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from ficoco_edge.eval.datasets import Sample
from ficoco_edge.runtime.images import open_image
from ficoco_edge.runtime.preprocess import ClipPreprocess
from ficoco_edge.runtime.prompt import PromptFormat

SHAPES = ("circle", "rectangle", "triangle")
COLOURS = ("red", "green", "blue", "black", "gray", "teal", "brown", "yellow")
IGNORE = -100


@dataclass
class VQATensors:
    """images: (n_img, H, W, 3) uint8; image_index: (n_q,); ids/labels: (n_q, s) left-padded;
    shape/colour: (n_img,) class ids or IGNORE."""

    images: torch.Tensor
    image_index: torch.Tensor
    ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor
    shape: torch.Tensor
    colour: torch.Tensor

    def to(self, device) -> "VQATensors":
        return VQATensors(*(getattr(self, f).to(device) for f in self.__dataclass_fields__))


def image_labels(samples: list[Sample], paths: list) -> tuple[torch.Tensor, torch.Tensor]:
    """Shape and colour class per image, read off the answers (IGNORE where no question tells).

    "what color is the circle?" -> blue: colour from the answer, shape from the question;
    "is there not a red shape?" -> no: the question's words hold for the image (double negation).
    """
    index = {p: i for i, p in enumerate(paths)}
    labels = {"shape": torch.full((len(paths),), IGNORE), "colour": torch.full((len(paths),), IGNORE)}
    for s in samples:
        words = s.question.rstrip("?").split()
        holds = s.question.startswith("what") or ((s.answer == "yes") != bool({"not", "no"} & set(words)))
        found = [s.answer] if s.question.startswith("what") else []
        found += [w for w in words if w in SHAPES or w in COLOURS] if holds else []
        for word in found:
            kind, classes = ("shape", SHAPES) if word in SHAPES else ("colour", COLOURS)
            if word in classes:
                labels[kind][index[s.image]] = classes.index(word)
    return labels["shape"], labels["colour"]


def pixels_uint8(paths: list, preprocess: ClipPreprocess, workers: int = 8) -> torch.Tensor:
    """Resized, cropped images (n, H, W, 3) uint8; normalisation happens on the device."""
    with ThreadPoolExecutor(workers) as pool:
        arrays = list(pool.map(lambda p: preprocess.resized(open_image(p)), paths))
    return torch.from_numpy(np.stack(arrays))


def normalize(images: torch.Tensor, preprocess: ClipPreprocess, dtype=torch.float32) -> torch.Tensor:
    """(b, H, W, 3) uint8 -> (b, 3, H, W), exactly ClipPreprocess.normalize."""
    mean = torch.tensor(preprocess.mean, device=images.device)
    std = torch.tensor(preprocess.std, device=images.device)
    x = (images.float() / 255.0 - mean) / std
    return x.permute(0, 3, 1, 2).contiguous().to(dtype)


def prompt_tensors(samples: list[Sample], encode, prompt: PromptFormat, image_tokens: int, answer_suffix: str,
                   pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Left-padded prompt + answer ids; labels are IGNORE except on the answer and its end token."""
    rows, answers = [], []
    for s in samples:
        rows.append(prompt.ids(encode, s.question, image_tokens))
        answers.append(encode(s.answer + answer_suffix))
    width = max(len(r) + len(a) for r, a in zip(rows, answers))
    ids = torch.full((len(rows), width), pad_id)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE)
    for i, (r, a) in enumerate(zip(rows, answers)):
        full = torch.tensor(r + a)
        ids[i, width - len(full):] = full
        mask[i, width - len(full):] = 1
        labels[i, width - len(a):] = torch.tensor(a)
    return ids, mask, labels


def build_tensors(samples: list[Sample], encode, prompt: PromptFormat, preprocess: ClipPreprocess,
                  image_tokens: int, answer_suffix: str, pad_id: int) -> VQATensors:
    paths = list(dict.fromkeys(s.image for s in samples))
    index = {p: i for i, p in enumerate(paths)}
    ids, mask, labels = prompt_tensors(samples, encode, prompt, image_tokens, answer_suffix, pad_id)
    shape, colour = image_labels(samples, paths)
    return VQATensors(pixels_uint8(paths, preprocess), torch.tensor([index[s.image] for s in samples]),
                      ids, mask, labels, shape, colour)
