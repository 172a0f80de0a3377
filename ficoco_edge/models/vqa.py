"""A loaded vision-language model with everything needed to answer questions (PyTorch path)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from PIL import Image

from ficoco_edge.models.llava import image_tokens_for
from ficoco_edge.runtime.preprocess import ClipPreprocess
from ficoco_edge.runtime.prompt import PromptFormat


@dataclass
class VisionLanguageModel:
    name: str
    model: torch.nn.Module  # LlavaForConditionalGeneration, possibly patched by ficoco_edge.models.apply
    tokenizer: object  # a transformers tokenizer
    preprocess: ClipPreprocess
    prompt: PromptFormat

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def prompt_batch(self, questions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Left-padded prompts with the image span the applied reduction expects. -> ids, mask (b, s)."""
        n_image = image_tokens_for(self.model)
        rows = [self.prompt.ids(self.encode, q, n_image) for q in questions]
        width = max(map(len, rows))
        ids = torch.full((len(rows), width), self.prompt.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, width - len(row):] = torch.tensor(row)
            mask[i, width - len(row):] = 1
        return ids.to(self.device), mask.to(self.device)

    def pixels(self, images: list[Image.Image]) -> torch.Tensor:
        """Images -> pixel values (b, 3, H, W) on the model's device and dtype."""
        return torch.from_numpy(self.preprocess(images)).to(self.device, self.dtype)

    @torch.inference_mode()
    def generate(self, pixel_values: torch.Tensor, questions: list[str], max_new_tokens: int = 8) -> list[str]:
        """Greedy answers for a batch: pixel values (b, 3, H, W) + b questions -> b strings."""
        ids, mask = self.prompt_batch(questions)
        out = self.model.generate(input_ids=ids, attention_mask=mask, pixel_values=pixel_values,
                                  max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=list(self.prompt.stop_ids),
                                  pad_token_id=self.prompt.pad_id)
        return [t.strip() for t in self.tokenizer.batch_decode(
            out[:, ids.shape[1]:], skip_special_tokens=True, clean_up_tokenization_spaces=False)]

    def answer(self, images: list[Image.Image], questions: list[str], max_new_tokens: int = 8) -> list[str]:
        return self.generate(self.pixels(images), questions, max_new_tokens)
