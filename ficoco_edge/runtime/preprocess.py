"""CLIP image pre-processing in numpy + Pillow (no torch), matching transformers' CLIPImageProcessor.

Resize so the shorter side is `size` (bicubic, on 8-bit pixels), centre-crop `crop` x `crop`,
scale to [0, 1] and normalise per channel. Used by the runtime and, for the embedded model, by
training and evaluation, so every path sees the same pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class ClipPreprocess:
    size: int = 336
    crop: int = 336
    mean: tuple[float, float, float] = OPENAI_CLIP_MEAN
    std: tuple[float, float, float] = OPENAI_CLIP_STD

    def resized(self, image: Image.Image) -> np.ndarray:
        """RGB image -> (crop, crop, 3) uint8 after the shorter-side resize and centre crop."""
        image = image.convert("RGB")
        w, h = image.size
        # transformers truncates the longer side (int, not round)
        new_w, new_h = (self.size, int(self.size * h / w)) if w <= h else (int(self.size * w / h), self.size)
        pixels = np.asarray(image.resize((new_w, new_h), Image.Resampling.BICUBIC))
        top, left = (new_h - self.crop) // 2, (new_w - self.crop) // 2
        return pixels[max(top, 0):max(top, 0) + self.crop, max(left, 0):max(left, 0) + self.crop]

    def normalize(self, pixels: np.ndarray) -> np.ndarray:
        """(..., H, W, 3) uint8 -> (..., 3, H, W) float32, normalised."""
        x = pixels.astype(np.float32) / 255.0
        x = (x - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return np.moveaxis(x, -1, -3).copy()

    def __call__(self, images: list[Image.Image]) -> np.ndarray:
        """Images -> pixel values (b, 3, crop, crop) float32."""
        return self.normalize(np.stack([self.resized(im) for im in images]))
